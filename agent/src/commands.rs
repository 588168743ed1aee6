//! The command framework: a registry of extension commands, the executor
//! that enforces IPA's processing order (global lock → split name → busy
//! check → extension → command → validator → execute), and the result store.
//!
//! Results are kept forever in insertion order; the busy check only looks at
//! the last one, as IPA does. Each result is a `watch` channel so an HTTP
//! handler can await completion (`?wait=true`) without blocking the runtime.

use serde_json::{Map, Value, json};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use tokio::sync::watch;

/// Keyword arguments of a command (`params` of the request).
pub type Params = Map<String, Value>;

/// An IPA `RESTError`: serialized as `command_error` and used for HTTP errors.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}: {details}")]
pub struct CommandError {
    /// Python class name, e.g. `InvalidCommandParamsError`.
    pub kind: String,
    /// HTTP status code.
    pub code: u16,
    /// Short message.
    pub message: String,
    /// Details for the operator.
    pub details: String,
}

impl CommandError {
    fn new(kind: &str, code: u16, message: &str, details: impl Into<String>) -> Self {
        CommandError {
            kind: kind.into(),
            code,
            message: message.into(),
            details: details.into(),
        }
    }
    /// 400 `Invalid command: …`.
    pub fn invalid_command(details: impl Into<String>) -> Self {
        Self::new("InvalidCommandError", 400, "Invalid command", details)
    }
    /// 400 `Invalid command parameters: …` (a validator said no).
    pub fn invalid_params(details: impl Into<String>) -> Self {
        Self::new(
            "InvalidCommandParamsError",
            400,
            "Invalid command parameters",
            details,
        )
    }
    /// 404 `Not found: …`.
    pub fn not_found(details: impl Into<String>) -> Self {
        Self::new("RequestedObjectNotFoundError", 404, "Not found", details)
    }
    /// 409 `Agent is busy: executing command <name>`.
    pub fn busy(name: &str) -> Self {
        Self::new(
            "AgentIsBusy",
            409,
            "Agent is busy",
            format!("executing command {name}"),
        )
    }
    /// 500 `Command execution failed: …` (an unexpected error while running).
    pub fn execution(details: impl Into<String>) -> Self {
        Self::new(
            "CommandExecutionError",
            500,
            "Command execution failed",
            details,
        )
    }
    /// An unexpected keyword argument: IPA raises TypeError; Ironic checks
    /// `type == "TypeError"`.
    pub fn type_error(details: impl Into<String>) -> Self {
        Self::new("TypeError", 500, "Command execution failed", details)
    }
    /// The `command_error` object.
    pub fn to_json(&self) -> Value {
        json!({"type": self.kind, "code": self.code, "message": self.message, "details": self.details})
    }
}

/// Sync commands finish inside the request; async ones run in a thread.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Runs under the global lock; its result is final.
    Sync,
    /// Starts a thread; the POST answers `RUNNING` unless `wait=true`.
    Async,
}

/// What a command returns: a string, an object, or nothing.
pub type Outcome = Result<Option<Value>, CommandError>;

type Validator = Arc<dyn Fn(&Params) -> Result<(), String> + Send + Sync>;
type Runner = Arc<dyn Fn(Params) -> Outcome + Send + Sync>;

/// One command of an extension.
#[derive(Clone)]
pub struct Command {
    mode: Mode,
    allowed: &'static [&'static str],
    validator: Validator,
    runner: Runner,
}

impl Command {
    /// A command accepting the keyword arguments in `allowed`; anything else
    /// fails like a Python TypeError.
    pub fn new(
        mode: Mode,
        allowed: &'static [&'static str],
        runner: impl Fn(Params) -> Outcome + Send + Sync + 'static,
    ) -> Self {
        Command {
            mode,
            allowed,
            validator: Arc::new(|_| Ok(())),
            runner: Arc::new(runner),
        }
    }
    /// Adds a validator, run inline before execution; an error is a 400.
    pub fn with_validator(
        mut self,
        v: impl Fn(&Params) -> Result<(), String> + Send + Sync + 'static,
    ) -> Self {
        self.validator = Arc::new(v);
        self
    }
}

/// Extensions by name, each with its commands by name.
#[derive(Default, Clone)]
pub struct Registry {
    extensions: BTreeMap<String, BTreeMap<String, Command>>,
}

impl Registry {
    /// Registers `ext.cmd`. Tests use this to add fake extensions.
    pub fn register(&mut self, ext: &str, cmd: &str, command: Command) {
        self.extensions
            .entry(ext.to_string())
            .or_default()
            .insert(cmd.to_string(), command);
    }
}

/// `RUNNING`, `SUCCEEDED` or `FAILED`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Still executing.
    Running,
    /// Finished without error.
    Succeeded,
    /// Finished with `command_error` set.
    Failed,
}

impl Status {
    fn as_str(self) -> &'static str {
        match self {
            Status::Running => "RUNNING",
            Status::Succeeded => "SUCCEEDED",
            Status::Failed => "FAILED",
        }
    }
}

/// The mutable part of a result.
#[derive(Debug, Clone)]
pub struct State {
    /// Current status.
    pub status: Status,
    /// Set when FAILED.
    pub error: Option<CommandError>,
    /// The serialized `command_result`.
    pub result: Option<Value>,
}

/// One stored command result.
pub struct Entry {
    /// uuid4.
    pub id: String,
    /// Short name (without the extension prefix): Ironic matches on it.
    pub name: String,
    state: watch::Sender<State>,
}

impl Entry {
    /// A snapshot of the current state.
    pub fn state(&self) -> State {
        self.state.borrow().clone()
    }
    /// The IPA result object. `command_params` is deliberately absent.
    pub fn to_json(&self) -> Value {
        let s = self.state();
        json!({
            "id": self.id,
            "command_name": self.name,
            "command_status": s.status.as_str(),
            "command_error": s.error.as_ref().map(CommandError::to_json),
            "command_result": s.result,
        })
    }
    /// Waits (asynchronously) until the command is no longer RUNNING.
    pub async fn wait_done(&self) {
        let mut rx = self.state.subscribe();
        let _ = rx.wait_for(|s| s.status != Status::Running).await;
    }
    fn finish(&self, name: &str, outcome: Outcome, is_async: bool) {
        let state = match outcome {
            Ok(v) => State {
                status: Status::Succeeded,
                error: None,
                result: serialize_result(name, v, is_async),
            },
            Err(e) => State {
                status: Status::Failed,
                error: Some(e),
                result: None,
            },
        };
        self.state.send_replace(state);
    }
}

/// A string becomes `{"result": s}` (sync) or `{"result": "<name>: s"}`
/// (async); an object passes through; nothing is `null`.
fn serialize_result(name: &str, v: Option<Value>, is_async: bool) -> Option<Value> {
    match v {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if is_async => Some(json!({"result": format!("{name}: {s}")})),
        Some(Value::String(s)) => Some(json!({"result": s})),
        Some(other) => Some(other),
    }
}

/// Runs commands and stores their results.
pub struct Executor {
    registry: Registry,
    lock: Mutex<()>,
    results: Mutex<Vec<Arc<Entry>>>,
    on_async_done: Arc<dyn Fn() + Send + Sync>,
}

impl Executor {
    /// `on_async_done` is called once after each async command ends (it
    /// forces a heartbeat).
    pub fn new(registry: Registry, on_async_done: Arc<dyn Fn() + Send + Sync>) -> Self {
        Executor {
            registry,
            lock: Mutex::new(()),
            results: Mutex::new(Vec::new()),
            on_async_done,
        }
    }

    /// All results, in insertion order.
    pub fn list(&self) -> Vec<Arc<Entry>> {
        self.results.lock().map(|r| r.clone()).unwrap_or_default()
    }

    /// The result with this id.
    pub fn get(&self, id: &str) -> Result<Arc<Entry>, CommandError> {
        self.list().into_iter().find(|e| e.id == id).ok_or_else(|| {
            CommandError::not_found(format!("Command Result with id {id} not found."))
        })
    }

    /// Executes `ext.cmd` (blocking: call it off the async runtime). An
    /// `Err` is an HTTP error; a command that ran and failed is `Ok` with a
    /// FAILED entry.
    pub fn execute(&self, full_name: &str, params: Params) -> Result<Arc<Entry>, CommandError> {
        let _guard = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        let Some((ext_name, cmd_name)) = full_name.split_once('.') else {
            return Err(CommandError::invalid_command(
                "Command name must be of the form <extension>.<name>",
            ));
        };
        if let Some(last) = self.list().last()
            && last.state().status == Status::Running
        {
            return Err(CommandError::busy(&last.name));
        }
        let ext = self.registry.extensions.get(ext_name).ok_or_else(|| {
            CommandError::not_found(format!("Extension with id {ext_name} not found."))
        })?;
        let cmd = ext
            .get(cmd_name)
            .ok_or_else(|| CommandError::invalid_command(format!("Unknown command: {cmd_name}")))?
            .clone();
        (cmd.validator)(&params).map_err(CommandError::invalid_params)?;

        let (tx, _) = watch::channel(State {
            status: Status::Running,
            error: None,
            result: None,
        });
        let entry = Arc::new(Entry {
            id: crate::timing::uuid4(),
            name: cmd_name.to_string(),
            state: tx,
        });
        if let Ok(mut r) = self.results.lock() {
            r.push(entry.clone());
        }
        log::info!("executing command {ext_name}.{cmd_name} (id {})", entry.id);

        let unexpected = params
            .keys()
            .find(|k| !cmd.allowed.contains(&k.as_str()))
            .cloned();
        let cmd_name = cmd_name.to_string();
        let run = move |params: Params| -> Outcome {
            if let Some(k) = unexpected {
                return Err(CommandError::type_error(format!(
                    "{cmd_name}() got an unexpected keyword argument '{k}'"
                )));
            }
            (cmd.runner)(params)
        };
        match cmd.mode {
            Mode::Sync => {
                let outcome = run(params);
                log_outcome(&entry.name, &outcome);
                entry.finish(&entry.name, outcome, false);
            }
            Mode::Async => {
                let e = entry.clone();
                let done = self.on_async_done.clone();
                let spawned = std::thread::Builder::new()
                    .name(format!("cmd-{}", entry.name))
                    .spawn(move || {
                        let outcome = run(params).map_err(|err| match err.code {
                            // Only REST errors pass through; anything else
                            // is wrapped like IPA's CommandExecutionError.
                            400..=499 => err,
                            _ if err.kind == "CommandExecutionError" => err,
                            _ => CommandError::execution(err.to_string()),
                        });
                        log_outcome(&e.name, &outcome);
                        e.finish(&e.name, outcome, true);
                        done();
                    });
                if let Err(err) = spawned {
                    entry.finish(
                        &entry.name,
                        Err(CommandError::execution(format!(
                            "cannot start a thread: {err}"
                        ))),
                        true,
                    );
                }
            }
        }
        Ok(entry)
    }
}

fn log_outcome(name: &str, outcome: &Outcome) {
    match outcome {
        Ok(_) => log::info!("command {name} succeeded"),
        Err(e) => log::warn!("command {name} failed: {} ({})", e, e.kind),
    }
}
