//! Scrubbing secrets out of text the agent hands to someone else: every
//! log line it prints and keeps, and every file `log.collect_system_logs`
//! returns (the kernel log and the journal repeat the kernel command line,
//! which may carry `ipa-agent-token=`).
//!
//! Two nets, because either alone misses something: by shape (the value
//! after `ipa-agent-token=`, `agent_token=`, a JSON `"agent_token"` or
//! `"rescue_password"`, anything that looks like a crypt hash), and by
//! value (the token, password and hash this process has actually seen,
//! registered with [`remember`]), which catches a secret in a place no
//! pattern foresaw.

use std::borrow::Cow;
use std::sync::Mutex;

/// What a secret is replaced with.
pub const MASK: &str = "***";

static KNOWN: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// Registers a secret value so it is masked wherever it appears. Values
/// shorter than 6 characters are not registered: masking every "abc" in a
/// log would destroy it, and the shape rules still apply.
pub fn remember(secret: &str) {
    let s = secret.trim();
    if s.len() < 6 {
        return;
    }
    if let Ok(mut k) = KNOWN.lock()
        && !k.iter().any(|x| x == s)
    {
        k.push(s.to_string());
        // Longest first, so a secret containing another is masked whole.
        k.sort_by_key(|x| std::cmp::Reverse(x.len()));
    }
}

/// `key=value` forms: the value ends at whitespace, `&`, a quote, `,` or `;`.
const KV_KEYS: &[&str] = &["ipa-agent-token=", "agent_token=", "rescue_password="];
/// JSON keys whose string value is secret.
const JSON_KEYS: &[&str] = &["\"agent_token\"", "\"rescue_password\""];

fn ends_value(c: char) -> bool {
    c.is_whitespace() || matches!(c, '&' | '"' | '\'' | ',' | ';' | ')' | ']' | '}')
}

/// Masks the value after each occurrence of `key` (case-insensitive).
fn mask_after(text: &str, key: &str, value_start: impl Fn(&str) -> Option<usize>) -> String {
    let lower = text.to_ascii_lowercase();
    let mut out = String::with_capacity(text.len());
    let mut pos = 0;
    while let Some(found) = lower[pos..].find(key) {
        let after_key = pos + found + key.len();
        out.push_str(&text[pos..after_key]);
        pos = after_key;
        let Some(skip) = value_start(&text[pos..]) else {
            continue;
        };
        out.push_str(&text[pos..pos + skip]);
        pos += skip;
        let rest = &text[pos..];
        let end = rest.find(ends_value).unwrap_or(rest.len());
        if end > 0 {
            out.push_str(MASK);
        }
        pos += end;
    }
    out.push_str(&text[pos..]);
    out
}

/// `$id$...` crypt strings (`$1$`, `$2b$`, `$5$`, `$6$`, `$y$`, ...) become
/// `$id$***`.
fn mask_crypt(text: &str) -> String {
    let b = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    let mut copied = 0;
    while i < b.len() {
        if b[i] == b'$' {
            let id_len = b[i + 1..]
                .iter()
                .take_while(|c| c.is_ascii_alphanumeric())
                .count();
            let j = i + 1 + id_len;
            if (1..=6).contains(&id_len) && b.get(j) == Some(&b'$') {
                let tail = b[j + 1..]
                    .iter()
                    .take_while(|c| c.is_ascii_alphanumeric() || b"./$=,".contains(c))
                    .count();
                if tail >= 8 {
                    out.push_str(&text[copied..=j]);
                    out.push_str(MASK);
                    i = j + 1 + tail;
                    copied = i;
                    continue;
                }
            }
        }
        i += 1;
    }
    out.push_str(&text[copied..]);
    out
}

/// `text` with every secret masked; borrowed when nothing changed.
pub fn redact(text: &str) -> Cow<'_, str> {
    let mut s = text.to_string();
    for key in KV_KEYS {
        s = mask_after(&s, key, |_| Some(0));
    }
    for key in JSON_KEYS {
        // `"key": "value"`: skip spaces, the colon and the opening quote.
        s = mask_after(&s, key, |rest| {
            let t = rest.trim_start();
            let t2 = t.strip_prefix(':')?.trim_start();
            let t3 = t2.strip_prefix('"')?;
            Some(rest.len() - t3.len())
        });
    }
    s = mask_crypt(&s);
    if let Ok(known) = KNOWN.lock() {
        for k in known.iter() {
            if s.contains(k.as_str()) {
                s = s.replace(k.as_str(), MASK);
            }
        }
    }
    if s == text {
        Cow::Borrowed(text)
    } else {
        Cow::Owned(s)
    }
}

/// [`redact`] for bytes that are usually text (command output, log files);
/// invalid UTF-8 is replaced rather than passed through unscrubbed.
pub fn redact_bytes(data: &[u8]) -> Vec<u8> {
    let text = String::from_utf8_lossy(data);
    redact(&text).into_owned().into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes() {
        let cases = [
            (
                "Kernel command line: BOOT_IMAGE=/vmlinuz ipa-agent-token=AbC123xyz ipa-api-url=http://i",
                "Kernel command line: BOOT_IMAGE=/vmlinuz ipa-agent-token=*** ipa-api-url=http://i",
            ),
            (
                "POST /v1/commands/?wait=false&agent_token=s3cr3t-t0k HTTP/1.1",
                "POST /v1/commands/?wait=false&agent_token=*** HTTP/1.1",
            ),
            (
                r#"{"callback_url": "https://x", "agent_token": "abc-def_0", "n": 1}"#,
                r#"{"callback_url": "https://x", "agent_token": "***", "n": 1}"#,
            ),
            (
                r#"{"rescue_password":"hunter2hunter2","hashed":false}"#,
                r#"{"rescue_password":"***","hashed":false}"#,
            ),
            (
                "rescue:$6$saltsalt$abcdefghijklmnop:19000:0:99999:7:::",
                "rescue:$6$***:19000:0:99999:7:::",
            ),
            ("price is $5 or $10$ today", "price is $5 or $10$ today"),
            ("plain line", "plain line"),
        ];
        for (input, want) in cases {
            assert_eq!(redact(input), want, "{input}");
        }
    }

    #[test]
    fn remembered_values_anywhere() {
        remember("Z9-remembered-secret-Z9");
        remember("abc");
        assert_eq!(
            redact("token Z9-remembered-secret-Z9 in prose, abc stays"),
            "token *** in prose, abc stays"
        );
        assert_eq!(
            redact_bytes(b"x\xffZ9-remembered-secret-Z9"),
            "x\u{fffd}***".as_bytes()
        );
    }
}
