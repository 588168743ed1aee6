//! The `ironic.conf` a test Ironic runs with.
//!
//! Every path Ironic would write to by default (`/var/lib/ironic/...`,
//! `/tftpboot`, `/httpboot`) is moved into the run's state directory, so a
//! test never touches the host outside it. `[agent]require_tls` is left at
//! its default (true) on purpose: a real deployment refuses `http://`
//! callbacks, and so must the test.

use std::fmt::Write as _;
use std::path::Path;

/// oslo.policy override that shows node secrets to API callers.
///
/// Ironic masks `instance_info.hashed_rescue_password` (`show_instance_secrets`)
/// and `driver_internal_info.agent_secret_token` (`show_password`) as `******`
/// by default; a test needs the real hash to check the agent wrote exactly
/// what Ironic sent, and the token to check a new rescue issues a new one.
/// Test-only: never do this in a cloud.
pub(crate) const REVEAL_SECRETS_POLICY: &str =
    "\"show_instance_secrets\": \"@\"\n\"show_password\": \"@\"\n";

/// Settings for [`super::Ironic::start_with`]; [`IronicConfig::default`] is what
/// agent tests need.
#[derive(Debug, Clone)]
pub struct IronicConfig {
    reveal_secrets: bool,
    extra: Vec<(String, String, String)>,
    env: Vec<(String, String)>,
}

/// The settings of every run, as `ironic.conf` text where `{state}` stands
/// for the state directory and `{port}` for the API port. [`render`]
/// re-emits it section by section with the additions after it.
///
/// [`render`]: IronicConfig::render
const SETTINGS: &str = "\
[DEFAULT]
# One process, no message bus, no Keystone.
auth_strategy = noauth
rpc_transport = none
host = ipa-e2e
debug = true
log_file = {state}/ironic.log
state_path = {state}
tempdir = {state}/tmp
# Fake hardware; the agent rescue and custom-agent deploy interfaces are
# what a real rescue with our ramdisk uses.
enabled_hardware_types = fake-hardware
enabled_boot_interfaces = fake
enabled_deploy_interfaces = fake,custom-agent
enabled_management_interfaces = fake
enabled_power_interfaces = fake
enabled_network_interfaces = noop
default_network_interface = noop
enabled_rescue_interfaces = agent,no-rescue
enabled_inspect_interfaces = no-inspect
enabled_console_interfaces = no-console
enabled_raid_interfaces = no-raid
enabled_vendor_interfaces = no-vendor
enabled_bios_interfaces = no-bios
enabled_firmware_interfaces = no-firmware

[api]
host_ip = 127.0.0.1
port = {port}

[database]
connection = sqlite:///{state}/ironic.sqlite

[agent]
# The fake boot interface cannot prepare a rescue ramdisk: the test starts
# the agent itself. require_tls stays at its default (true).
manage_agent_boot = false
certificates_path = {state}/certificates

[conductor]
# `provide` would otherwise run cleaning, which needs an agent too.
automated_clean = false

[dhcp]
dhcp_provider = none

[oslo_concurrency]
lock_path = {state}/locks

[deploy]
http_root = {state}/httpboot
iso_master_path = {state}/master_iso_images

[pxe]
tftp_root = {state}/tftpboot
tftp_master_path = {state}/tftpboot/master_images
images_path = {state}/images
instance_master_path = {state}/master_images

[ironic_networking]
driver_config_dir = {state}/networking
";

/// What deploy, cleaning and inspection with our ramdisk add to
/// [`SETTINGS`] (see `ironic-deploy.md`'s traps), in the same form.
const JOB_SETTINGS: &str = "\
[DEFAULT]
# The `manual-management` hardware type: fake power, noop management
# (which accepts the `disk` boot device that `prepare_instance_boot`
# sets), `pxe` boot (required by that type, unused with
# `manage_agent_boot = false`); `direct` deploy; `agent` inspection.
enabled_hardware_types = fake-hardware,manual-management
enabled_boot_interfaces = fake,pxe
enabled_deploy_interfaces = fake,custom-agent,direct
enabled_management_interfaces = fake,noop
enabled_inspect_interfaces = no-inspect,agent

[conductor]
# Automated cleaning with only `erase_devices_metadata`.
automated_clean = true

[deploy]
erase_devices_priority = 0
erase_devices_metadata_priority = 10

[agent]
# Images handed to the agent as plain URLs; no power-state polling after
# deploy (fake power never reports off).
image_download_source = http
post_deploy_get_power_state_retries = 0
deploy_logs_local_path = {state}/deploy-logs

[api]
# A short heartbeat interval.
ramdisk_heartbeat_timeout = 20

[inspector]
# Inspection without managed boot.
require_managed_boot = false
add_ports = active

[service_catalog]
# The API's URL as a QEMU guest reaches it (`ipa-inspection-callback-url`
# for the inspection boot Ironic prepares).
endpoint_override = http://10.0.2.2:{port}
";

/// The `(section, key, value)` settings of `ironic.conf`-style text, in
/// order; blank lines and `#` comments are skipped. Only for the constants
/// above, so a line that is none of these is a bug here and panics.
fn entries(text: &'static str) -> impl Iterator<Item = (&'static str, &'static str, &'static str)> {
    let mut section = None;
    text.lines().filter_map(move |line| {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            return None;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = Some(name);
            return None;
        }
        let (key, value) = line
            .split_once(" = ")
            .unwrap_or_else(|| panic!("not `key = value`: {line:?}"));
        let section = section.unwrap_or_else(|| panic!("{key} before any [section]"));
        Some((section, key, value))
    })
}

impl Default for IronicConfig {
    fn default() -> Self {
        Self {
            reveal_secrets: true,
            extra: Vec::new(),
            env: Vec::new(),
        }
    }
}

impl IronicConfig {
    /// Whether the API shows `instance_info` and `driver_internal_info`
    /// secrets (default: yes, see [`REVEAL_SECRETS_POLICY`]).
    pub fn reveal_secrets(mut self, reveal: bool) -> Self {
        self.reveal_secrets = reveal;
        self
    }

    /// Adds `key = value` to `[section]`, after the defaults (oslo.config
    /// takes the last value, so this overrides them).
    pub fn set(mut self, section: &str, key: &str, value: &str) -> Self {
        self.extra
            .push((section.to_string(), key.to_string(), value.to_string()));
        self
    }

    /// Adds [`JOB_SETTINGS`]: what the deploy, cleaning and inspection
    /// flows need.
    pub fn jobs(self) -> Self {
        entries(JOB_SETTINGS).fold(self, |c, (section, key, value)| c.set(section, key, value))
    }

    /// Sets an environment variable of the Ironic process (e.g.
    /// `http_proxy`).
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.to_string(), value.to_string()));
        self
    }

    pub(crate) fn envs(&self) -> &[(String, String)] {
        &self.env
    }

    pub(crate) fn reveals_secrets(&self) -> bool {
        self.reveal_secrets
    }

    /// The configuration text for a run in `state` listening on `port`.
    pub(crate) fn render(&self, state: &Path, port: u16) -> String {
        let s = state.display();
        let mut sections: Vec<(String, Vec<(String, String)>)> = Vec::new();
        let mut put = |section: &str, key: &str, value: String| {
            let idx = match sections.iter().position(|(name, _)| name == section) {
                Some(idx) => idx,
                None => {
                    sections.push((section.to_string(), Vec::new()));
                    sections.len() - 1
                }
            };
            sections[idx].1.push((key.to_string(), value));
        };

        let fill = |value: &str| {
            value
                .replace("{state}", &s.to_string())
                .replace("{port}", &port.to_string())
        };
        for (section, key, value) in entries(SETTINGS) {
            put(section, key, fill(value));
        }
        if self.reveal_secrets {
            put("oslo_policy", "policy_file", format!("{s}/policy.yaml"));
        }
        for (section, key, value) in &self.extra {
            put(section, key, fill(value));
        }

        let mut text = String::new();
        for (name, settings) in sections {
            let _ = writeln!(text, "[{name}]");
            for (key, value) in settings {
                let _ = writeln!(text, "{key} = {value}");
            }
            text.push('\n');
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_require_tls_default_and_confines_paths() {
        let text = IronicConfig::default().render(Path::new("/s"), 6385);
        assert!(!text.contains("require_tls"), "{text}");
        assert!(
            text.contains("[api]\nhost_ip = 127.0.0.1\nport = 6385\n"),
            "{text}"
        );
        for line in text.lines().filter(|l| l.contains('/')) {
            assert!(
                line.ends_with(" = /s")
                    || line.contains(" = /s/")
                    || line.contains("sqlite:////s/"),
                "path outside the state dir: {line}"
            );
        }
    }

    #[test]
    fn extra_settings_come_last_in_their_section() {
        let text = IronicConfig::default()
            .reveal_secrets(false)
            .set("agent", "command_timeout", "5")
            .render(Path::new("/s"), 1);
        assert!(!text.contains("oslo_policy"));
        let agent = text.split("[agent]\n").nth(1).unwrap();
        let section = agent.split("\n\n").next().unwrap();
        assert!(section.ends_with("command_timeout = 5"), "{section}");
    }

    #[test]
    fn job_settings_override_the_defaults_inside_the_state_dir() {
        let text = IronicConfig::default().jobs().render(Path::new("/s"), 1);
        let default = text.split("[DEFAULT]\n").nth(1).unwrap();
        let mut types = default
            .lines()
            .filter(|l| l.starts_with("enabled_hardware_types"));
        assert_eq!(
            types.next_back(),
            Some("enabled_hardware_types = fake-hardware,manual-management")
        );
        assert!(
            text.contains("endpoint_override = http://10.0.2.2:1\n"),
            "{text}"
        );
        assert!(
            text.contains("deploy_logs_local_path = /s/deploy-logs"),
            "{text}"
        );
        assert!(!text.contains("require_tls"), "{text}");
    }
}
