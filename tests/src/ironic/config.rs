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

/// The settings of every run, in order: section, key and value, where
/// `{state}` stands for the state directory and `{port}` for the API port.
const SETTINGS: &[(&str, &str, &str)] = &[
    // One process, no message bus, no Keystone.
    ("DEFAULT", "auth_strategy", "noauth"),
    ("DEFAULT", "rpc_transport", "none"),
    ("DEFAULT", "host", "ipa-e2e"),
    ("DEFAULT", "debug", "true"),
    ("DEFAULT", "log_file", "{state}/ironic.log"),
    ("DEFAULT", "state_path", "{state}"),
    ("DEFAULT", "tempdir", "{state}/tmp"),
    // Fake hardware; the agent rescue and custom-agent deploy interfaces
    // are what a real rescue with our ramdisk uses.
    ("DEFAULT", "enabled_hardware_types", "fake-hardware"),
    ("DEFAULT", "enabled_boot_interfaces", "fake"),
    ("DEFAULT", "enabled_deploy_interfaces", "fake,custom-agent"),
    ("DEFAULT", "enabled_management_interfaces", "fake"),
    ("DEFAULT", "enabled_power_interfaces", "fake"),
    ("DEFAULT", "enabled_network_interfaces", "noop"),
    ("DEFAULT", "default_network_interface", "noop"),
    ("DEFAULT", "enabled_rescue_interfaces", "agent,no-rescue"),
    ("DEFAULT", "enabled_inspect_interfaces", "no-inspect"),
    ("DEFAULT", "enabled_console_interfaces", "no-console"),
    ("DEFAULT", "enabled_raid_interfaces", "no-raid"),
    ("DEFAULT", "enabled_vendor_interfaces", "no-vendor"),
    ("DEFAULT", "enabled_bios_interfaces", "no-bios"),
    ("DEFAULT", "enabled_firmware_interfaces", "no-firmware"),
    ("api", "host_ip", "127.0.0.1"),
    ("api", "port", "{port}"),
    ("database", "connection", "sqlite:///{state}/ironic.sqlite"),
    // The fake boot interface cannot prepare a rescue ramdisk: the test
    // starts the agent itself. require_tls stays at its default (true).
    ("agent", "manage_agent_boot", "false"),
    ("agent", "certificates_path", "{state}/certificates"),
    // `provide` would otherwise run cleaning, which needs an agent too.
    ("conductor", "automated_clean", "false"),
    ("dhcp", "dhcp_provider", "none"),
    ("oslo_concurrency", "lock_path", "{state}/locks"),
    ("deploy", "http_root", "{state}/httpboot"),
    ("deploy", "iso_master_path", "{state}/master_iso_images"),
    ("pxe", "tftp_root", "{state}/tftpboot"),
    ("pxe", "tftp_master_path", "{state}/tftpboot/master_images"),
    ("pxe", "images_path", "{state}/images"),
    ("pxe", "instance_master_path", "{state}/master_images"),
    (
        "ironic_networking",
        "driver_config_dir",
        "{state}/networking",
    ),
];

/// What deploy, cleaning and inspection with our ramdisk add to
/// [`SETTINGS`] (see `ironic-deploy.md`'s traps): the `manual-management`
/// hardware type (fake power, noop management, which accepts the `disk`
/// boot device that `prepare_instance_boot` sets), `pxe` boot (required by
/// that type, unused with `manage_agent_boot = false`), `direct` deploy,
/// `agent` inspection without managed boot, automated cleaning with only
/// `erase_devices_metadata`, images handed to the agent as plain URLs, no
/// power-state polling after deploy (fake power never reports off), a
/// short heartbeat interval, and the API's URL as a QEMU guest reaches it
/// (`ipa-inspection-callback-url` for the inspection boot Ironic prepares).
const JOB_SETTINGS: &[(&str, &str, &str)] = &[
    (
        "DEFAULT",
        "enabled_hardware_types",
        "fake-hardware,manual-management",
    ),
    ("DEFAULT", "enabled_boot_interfaces", "fake,pxe"),
    (
        "DEFAULT",
        "enabled_deploy_interfaces",
        "fake,custom-agent,direct",
    ),
    ("DEFAULT", "enabled_management_interfaces", "fake,noop"),
    ("DEFAULT", "enabled_inspect_interfaces", "no-inspect,agent"),
    ("conductor", "automated_clean", "true"),
    ("deploy", "erase_devices_priority", "0"),
    ("deploy", "erase_devices_metadata_priority", "10"),
    ("agent", "image_download_source", "http"),
    ("agent", "post_deploy_get_power_state_retries", "0"),
    ("agent", "deploy_logs_local_path", "{state}/deploy-logs"),
    ("api", "ramdisk_heartbeat_timeout", "20"),
    ("inspector", "require_managed_boot", "false"),
    ("inspector", "add_ports", "active"),
    (
        "service_catalog",
        "endpoint_override",
        "http://10.0.2.2:{port}",
    ),
];

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
        JOB_SETTINGS
            .iter()
            .fold(self, |c, (section, key, value)| c.set(section, key, value))
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

        for (section, key, value) in SETTINGS {
            let value = value
                .replace("{state}", &s.to_string())
                .replace("{port}", &port.to_string());
            put(section, key, value);
        }
        if self.reveal_secrets {
            put("oslo_policy", "policy_file", format!("{s}/policy.yaml"));
        }
        for (section, key, value) in &self.extra {
            let value = value
                .replace("{state}", &s.to_string())
                .replace("{port}", &port.to_string());
            put(section, key, value);
        }

        let mut text = String::new();
        for (name, entries) in sections {
            let _ = writeln!(text, "[{name}]");
            for (key, value) in entries {
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
