//! A small client for QEMU's machine protocol (QMP) on a Unix socket: what
//! a test needs to plug a NIC or a USB stick into a running guest.
//!
//! QMP rather than the human monitor because its replies are structured:
//! a failed `device_add` is an `error` object, not a line of text that has
//! to be recognised. The protocol is one JSON object per line; after the
//! greeting the client must send `qmp_capabilities`, then each command gets
//! exactly one `return` or `error`, with asynchronous `event` objects (a
//! guest's `DEVICE_DELETED`, say) interleaved, which are kept for
//! [`Qmp::wait_event`].

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// Why a QMP exchange failed.
#[derive(Debug, thiserror::Error)]
pub enum QmpError {
    #[error("this VM was started without a QMP socket")]
    NoSocket,
    #[error("QMP socket {path}: {source}")]
    Connect {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("QMP: {0}")]
    Io(#[from] std::io::Error),
    #[error("QMP: QEMU closed the connection")]
    Closed,
    #[error("QMP: not a JSON object from QEMU: {line:?}")]
    Garbled { line: String },
    #[error("QMP {command}: {class}: {desc}")]
    Command {
        command: String,
        class: String,
        desc: String,
    },
    #[error("QMP: no {event} event within {timeout:?}")]
    NoEvent { event: String, timeout: Duration },
}

/// One QMP session, in command mode.
pub struct Qmp {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
    /// Events read while waiting for a command's reply.
    events: Vec<Value>,
}

impl Qmp {
    /// Connects to `path`, retrying for up to `timeout` while QEMU creates
    /// the socket, reads the greeting and enters command mode.
    pub fn connect(path: &Path, timeout: Duration) -> Result<Qmp, QmpError> {
        let deadline = Instant::now() + timeout;
        let stream = loop {
            match UnixStream::connect(path) {
                Ok(s) => break s,
                Err(_) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(100))
                }
                Err(source) => {
                    return Err(QmpError::Connect {
                        path: path.to_path_buf(),
                        source,
                    });
                }
            }
        };
        stream.set_read_timeout(Some(Duration::from_secs(30)))?;
        let mut qmp = Qmp {
            reader: BufReader::new(stream.try_clone()?),
            writer: stream,
            events: Vec::new(),
        };
        let greeting = qmp.read()?;
        if greeting.get("QMP").is_none() {
            return Err(QmpError::Garbled {
                line: greeting.to_string(),
            });
        }
        qmp.execute("qmp_capabilities", json!({}))?;
        Ok(qmp)
    }

    /// Runs `command` with `arguments` (a JSON object) and returns its
    /// `return` value; QEMU's `error` becomes [`QmpError::Command`].
    pub fn execute(&mut self, command: &str, arguments: Value) -> Result<Value, QmpError> {
        let mut line = json!({"execute": command, "arguments": arguments}).to_string();
        line.push('\n');
        self.writer.write_all(line.as_bytes())?;
        loop {
            let reply = self.read()?;
            if reply.get("event").is_some() {
                self.events.push(reply);
                continue;
            }
            if let Some(ret) = reply.get("return") {
                return Ok(ret.clone());
            }
            let error = reply.get("error").ok_or_else(|| QmpError::Garbled {
                line: reply.to_string(),
            })?;
            let field = |k: &str| {
                error
                    .get(k)
                    .and_then(Value::as_str)
                    .unwrap_or("?")
                    .to_string()
            };
            return Err(QmpError::Command {
                command: command.into(),
                class: field("class"),
                desc: field("desc"),
            });
        }
    }

    /// `device_add`: a device of QEMU model `driver` named `id`, with
    /// `props` (a JSON object of the device's properties, typed as QEMU
    /// wants them: strings, booleans, numbers).
    pub fn device_add(&mut self, driver: &str, id: &str, props: Value) -> Result<(), QmpError> {
        let mut args = json!({"driver": driver, "id": id});
        if let (Some(a), Value::Object(p)) = (args.as_object_mut(), props) {
            a.extend(p);
        }
        self.execute("device_add", args).map(drop)
    }

    /// `device_del`: asks the guest to release device `id`. The removal is
    /// done when the `DEVICE_DELETED` event comes ([`Qmp::wait_event`]).
    pub fn device_del(&mut self, id: &str) -> Result<(), QmpError> {
        self.execute("device_del", json!({"id": id})).map(drop)
    }

    /// `netdev_add` of a user-mode (slirp) network `id` on subnet `net`
    /// (e.g. `10.0.9.0/24`, the guest gets `.15`), with TCP forwards from
    /// host `127.0.0.1:host` to guest port `guest`: the back end for a NIC
    /// plugged in later.
    pub fn netdev_add_user(
        &mut self,
        id: &str,
        net: &str,
        hostfwd: &[(u16, u16)],
    ) -> Result<(), QmpError> {
        let fwd: Vec<Value> = hostfwd
            .iter()
            .map(|(h, g)| json!({"str": format!("tcp:127.0.0.1:{h}-:{g}")}))
            .collect();
        let mut args = json!({"type": "user", "id": id, "net": net});
        if !fwd.is_empty() {
            args["hostfwd"] = Value::Array(fwd);
        }
        self.execute("netdev_add", args).map(drop)
    }

    /// `blockdev-add` of the raw image `file` as block node `node`: the
    /// medium of a disk plugged in later.
    pub fn blockdev_add_raw(&mut self, node: &str, file: &Path) -> Result<(), QmpError> {
        let args = json!({
            "driver": "raw",
            "node-name": node,
            "file": {"driver": "file", "filename": file.display().to_string()},
        });
        self.execute("blockdev-add", args).map(drop)
    }

    /// Waits up to `timeout` for an event named `event` (or takes one that
    /// came earlier) and returns it.
    pub fn wait_event(&mut self, event: &str, timeout: Duration) -> Result<Value, QmpError> {
        let named = |v: &Value| v.get("event").and_then(Value::as_str) == Some(event);
        if let Some(i) = self.events.iter().position(named) {
            return Ok(self.events.remove(i));
        }
        let deadline = Instant::now() + timeout;
        let found = self.read_event_until(named, deadline);
        self.reader
            .get_ref()
            .set_read_timeout(Some(Duration::from_secs(30)))?;
        found?.ok_or_else(|| QmpError::NoEvent {
            event: event.into(),
            timeout,
        })
    }

    /// Reads until an event that `named` accepts or `deadline`; `None` when
    /// the deadline passed first. Other objects are kept.
    fn read_event_until(
        &mut self,
        named: impl Fn(&Value) -> bool,
        deadline: Instant,
    ) -> Result<Option<Value>, QmpError> {
        while Instant::now() < deadline {
            let left = deadline.saturating_duration_since(Instant::now());
            self.reader
                .get_ref()
                .set_read_timeout(Some(left.max(Duration::from_millis(10))))?;
            match self.read() {
                Ok(v) if named(&v) => return Ok(Some(v)),
                Ok(v) => self.events.push(v),
                Err(QmpError::Io(e))
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    break;
                }
                Err(e) => return Err(e),
            }
        }
        Ok(None)
    }

    /// The next JSON object from QEMU.
    fn read(&mut self) -> Result<Value, QmpError> {
        let mut line = String::new();
        if self.reader.read_line(&mut line)? == 0 {
            return Err(QmpError::Closed);
        }
        match serde_json::from_str::<Value>(line.trim()) {
            Ok(v @ Value::Object(_)) => Ok(v),
            _ => Err(QmpError::Garbled {
                line: line.trim().to_string(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixListener;

    /// A fake QEMU on a socket: sends the greeting, then answers each line
    /// with the next canned reply (events first where given).
    fn fake_qemu(
        replies: Vec<&'static str>,
    ) -> (
        tempfile::TempDir,
        PathBuf,
        std::thread::JoinHandle<Vec<String>>,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("qmp.sock");
        let listener = UnixListener::bind(&path).unwrap();
        let handle = std::thread::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            let mut w = stream.try_clone().unwrap();
            let mut r = BufReader::new(stream);
            w.write_all(b"{\"QMP\": {\"version\": {}, \"capabilities\": []}}\n")
                .unwrap();
            let mut got = Vec::new();
            for reply in replies {
                let mut line = String::new();
                if r.read_line(&mut line).unwrap() == 0 {
                    break;
                }
                got.push(line.trim().to_string());
                w.write_all(reply.as_bytes()).unwrap();
            }
            got
        });
        (dir, path, handle)
    }

    #[test]
    fn commands_get_their_reply_and_events_are_kept() {
        let (_dir, path, server) = fake_qemu(vec![
            "{\"return\": {}}\n",
            "{\"event\": \"DEVICE_DELETED\", \"data\": {\"device\": \"old\"}}\n{\"return\": {}}\n",
            "{\"error\": {\"class\": \"GenericError\", \"desc\": \"Duplicate device ID 'nic1'\"}}\n",
        ]);
        let mut qmp = Qmp::connect(&path, Duration::from_secs(5)).unwrap();
        qmp.device_add(
            "e1000e",
            "nic1",
            json!({"netdev": "hn1", "mac": "52:54:00:00:00:09"}),
        )
        .unwrap();
        let err = qmp.device_add("e1000e", "nic1", json!({})).unwrap_err();
        assert_eq!(
            err.to_string(),
            "QMP device_add: GenericError: Duplicate device ID 'nic1'"
        );
        let ev = qmp
            .wait_event("DEVICE_DELETED", Duration::from_millis(10))
            .unwrap();
        assert_eq!(ev["data"]["device"], "old");
        drop(qmp);
        let sent = server.join().unwrap();
        assert!(sent[0].contains("qmp_capabilities"), "{sent:?}");
        let add: Value = serde_json::from_str(&sent[1]).unwrap();
        assert_eq!(
            add,
            json!({"execute": "device_add", "arguments": {"driver": "e1000e", "id": "nic1", "netdev": "hn1", "mac": "52:54:00:00:00:09"}})
        );
    }

    #[test]
    fn a_missing_event_times_out_and_garbage_is_an_error() {
        let (_dir, path, server) = fake_qemu(vec!["{\"return\": {}}\n", "not json\n"]);
        let mut qmp = Qmp::connect(&path, Duration::from_secs(5)).unwrap();
        let err = qmp
            .wait_event("DEVICE_DELETED", Duration::from_millis(50))
            .unwrap_err();
        assert!(matches!(err, QmpError::NoEvent { .. }), "{err}");
        let err = qmp.device_del("x").unwrap_err();
        assert!(matches!(err, QmpError::Garbled { .. }), "{err}");
        drop(qmp);
        server.join().unwrap();
    }

    #[test]
    fn no_socket_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let err = Qmp::connect(&dir.path().join("none.sock"), Duration::from_millis(50))
            .err()
            .unwrap();
        assert!(err.to_string().starts_with("QMP socket "), "{err}");
    }
}
