# Shows the rescue login message (rescue element) in interactive login
# shells only: `ssh node CMD` and scripts get clean output.
case "$-" in
    *i*) [ -x /usr/libexec/ipa-rescue-motd ] && /usr/libexec/ipa-rescue-motd ;;
esac
