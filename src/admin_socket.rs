//! The daemon's admin socket, in Ceph's protocol so `ceph --admin-daemon <asok> <command>`
//! works as with rbd-mirror: the client writes a JSON command (`{"prefix": "...", <named
//! arguments>, "format": "json"}`) ended by NUL, the daemon answers with a 4-byte big-endian
//! length and the output. The `ceph` CLI first asks `get_command_descriptions` and only
//! sends what matches a signature there, so each command lists its literal words and its
//! named arguments the way Ceph's daemons do. Failures read as Pacific's do: `ERROR: (22)
//! Invalid argument` and the reason on the next line. Commands that exist only while a pool
//! or an image replayer does come from a [`Scoped`] source, asked at each request.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures::future::BoxFuture;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};
use tokio_util::sync::CancellationToken;

/// A failed command: Ceph's errno and the reason.
#[derive(Debug, Clone, PartialEq)]
pub struct AsokError {
    pub errno: i32,
    pub message: String,
}

impl AsokError {
    pub fn invalid(message: impl Into<String>) -> Self {
        AsokError {
            errno: libc::EINVAL,
            message: message.into(),
        }
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        AsokError {
            errno: libc::ENOENT,
            message: message.into(),
        }
    }

    fn render(&self) -> String {
        let text = std::io::Error::from_raw_os_error(self.errno).to_string();
        let text = text.split(" (os error").next().unwrap_or_default();
        format!("ERROR: ({}) {text}\n{}\n", self.errno, self.message)
    }
}

pub type Reply = Result<Value, AsokError>;

/// A command handler: gets the parsed command (its named arguments are keys).
pub type Handler = Arc<dyn Fn(Value) -> BoxFuture<'static, Reply> + Send + Sync>;

/// A named argument, a string as Ceph's `CephString`.
#[derive(Debug, Clone, Copy)]
pub struct Arg {
    pub name: &'static str,
    pub required: bool,
    /// Takes the rest of the words (`n=N`): arrives as a list.
    pub many: bool,
}

/// Commands that exist while something does (a pool replayer, an image replayer).
pub trait Scoped: Send + Sync {
    /// `(command words, help)` of each command that exists now.
    fn list(&self) -> Vec<(String, String)>;
    /// Runs `prefix` if it exists now.
    fn call(&self, prefix: &str, cmd: Value) -> Option<BoxFuture<'static, Reply>>;
}

struct Entry {
    args: Vec<Arg>,
    help: String,
    handler: Handler,
}

#[derive(Default)]
pub struct Commands {
    table: BTreeMap<String, Entry>,
    scoped: Vec<Arc<dyn Scoped>>,
}

/// The words of the commands every Ceph admin socket has, answered here.
const BUILTINS: &[(&str, &str)] = &[
    ("get_command_descriptions", "list available commands"),
    ("git_version", "get git sha1"),
    ("help", "list available commands"),
    ("version", "get ceph version"),
];

impl Commands {
    pub fn add(&mut self, words: &str, args: &[Arg], help: &str, handler: Handler) {
        let entry = Entry {
            args: args.to_vec(),
            help: help.into(),
            handler,
        };
        self.table.insert(words.into(), entry);
    }

    pub fn add_scoped(&mut self, scoped: Arc<dyn Scoped>) {
        self.scoped.push(scoped);
    }

    async fn run(&self, cmd: Value) -> Reply {
        let prefix = cmd
            .get("prefix")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        match prefix.as_str() {
            "get_command_descriptions" => return Ok(self.descriptions()),
            "help" => {
                let all = self
                    .all()
                    .into_iter()
                    .map(|(w, _, h)| (w, Value::String(h)));
                return Ok(Value::Object(all.collect()));
            }
            "version" => {
                return Ok(json!({ "version": env!("CARGO_PKG_VERSION"),
                    "release": "rbd-relay", "release_type": "stable" }));
            }
            "git_version" => return Ok(json!({ "git_version": env!("CARGO_PKG_VERSION") })),
            _ => {}
        }
        if let Some(entry) = self.table.get(&prefix) {
            return (entry.handler)(cmd).await;
        }
        for scoped in &self.scoped {
            if let Some(run) = scoped.call(&prefix, cmd.clone()) {
                return run.await;
            }
        }
        Err(AsokError::invalid(format!(
            "unknown command prefix {prefix}"
        )))
    }

    /// `(words, args, help)` of every command that exists now, sorted by words.
    fn all(&self) -> Vec<(String, Vec<Arg>, String)> {
        let mut all: Vec<_> = BUILTINS
            .iter()
            .map(|(w, h)| (w.to_string(), Vec::new(), h.to_string()))
            .chain(
                self.table
                    .iter()
                    .map(|(w, e)| (w.clone(), e.args.clone(), e.help.clone())),
            )
            .chain(
                self.scoped
                    .iter()
                    .flat_map(|s| s.list())
                    .map(|(w, h)| (w, Vec::new(), h)),
            )
            .collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    }

    fn descriptions(&self) -> Value {
        let mut out = serde_json::Map::new();
        for (i, (words, args, help)) in self.all().into_iter().enumerate() {
            let mut sig: Vec<Value> = words.split(' ').map(|w| json!(w)).collect();
            for arg in args {
                let mut desc = json!({ "name": arg.name, "type": "CephString" });
                if !arg.required {
                    desc["req"] = json!("false");
                }
                if arg.many {
                    desc["n"] = json!("N");
                }
                sig.push(desc);
            }
            out.insert(format!("cmd{i:03}"), json!({ "sig": sig, "help": help }));
        }
        Value::Object(out)
    }
}

/// A named string argument of a parsed command; a list (`n=N`) is joined by spaces.
pub fn arg(cmd: &Value, name: &str) -> Option<String> {
    match cmd.get(name)? {
        Value::String(s) => Some(s.clone()),
        Value::Array(words) => Some(
            words
                .iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(" "),
        ),
        other => Some(other.to_string()),
    }
}

/// Binds `path`, unless another process answers there (a second daemon with the same
/// name must not steal the first one's socket).
pub async fn bind(path: &Path) -> std::io::Result<UnixListener> {
    if UnixStream::connect(path).await.is_ok() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::AddrInUse,
            format!("{} is in use by another process", path.display()),
        ));
    }
    match tokio::fs::remove_file(path).await {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    UnixListener::bind(path)
}

/// Serves `commands` on `listener` (bound at `path`) until cancelled; removes the socket
/// file on the way out.
pub async fn serve(
    listener: UnixListener,
    path: PathBuf,
    commands: Commands,
    cancel: CancellationToken,
) {
    let commands = Arc::new(commands);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => break,
            conn = listener.accept() => {
                if let Ok((stream, _)) = conn {
                    let commands = commands.clone();
                    tokio::spawn(async move {
                        if let Err(e) = answer(stream, &commands).await {
                            tracing::debug!(%e, "admin socket client");
                        }
                    });
                }
            }
        }
    }
    let _ = tokio::fs::remove_file(&path).await;
}

async fn answer(mut stream: UnixStream, commands: &Commands) -> std::io::Result<()> {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while stream.read(&mut byte).await? == 1 && byte[0] != 0 && byte[0] != b'\n' {
        buf.push(byte[0]);
        if buf.len() > 64 << 10 {
            break; // no command is that long
        }
    }
    let out = match serde_json::from_slice::<Value>(&buf) {
        Ok(cmd) => {
            let pretty = cmd.get("format").and_then(Value::as_str) != Some("json");
            match commands.run(cmd).await {
                Ok(v) if pretty => serde_json::to_string_pretty(&v).unwrap_or_default(),
                Ok(v) => v.to_string(),
                Err(e) => e.render(),
            }
        }
        Err(e) => AsokError::invalid(format!("bad command: {e}")).render(),
    };
    stream.write_all(&(out.len() as u32).to_be_bytes()).await?;
    stream.write_all(out.as_bytes()).await?;
    Ok(())
}

/// Sends one command to a daemon's socket and returns its answer (what `rbd-relay status`
/// and the tests use; `ceph --admin-daemon` does the same).
pub async fn request(path: &Path, cmd: &Value) -> std::io::Result<String> {
    let mut stream = UnixStream::connect(path).await?;
    let mut msg = cmd.to_string().into_bytes();
    msg.push(0);
    stream.write_all(&msg).await?;
    let mut len = [0u8; 4];
    stream.read_exact(&mut len).await?;
    let mut out = vec![0u8; u32::from_be_bytes(len) as usize];
    stream.read_exact(&mut out).await?;
    Ok(String::from_utf8_lossy(&out).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn commands() -> Commands {
        let mut c = Commands::default();
        let echo: Handler = Arc::new(|cmd| {
            Box::pin(async move {
                match arg(&cmd, "val") {
                    Some(v) => Ok(json!({ "val": v })),
                    None => Err(AsokError::invalid("no val")),
                }
            })
        });
        let val = Arg {
            name: "val",
            required: true,
            many: true,
        };
        c.add("echo it", &[val], "echoes", echo);
        c
    }

    #[tokio::test]
    async fn signatures_arguments_and_errors_read_as_ceph_s() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.asok");
        let listener = bind(&path).await.unwrap();
        // A second daemon on the same path is refused while the first serves.
        let cancel = CancellationToken::new();
        let server = tokio::spawn(serve(listener, path.clone(), commands(), cancel.clone()));
        assert!(bind(&path).await.is_err());
        let descs: Value = serde_json::from_str(
            &request(&path, &json!({"prefix": "get_command_descriptions"}))
                .await
                .unwrap(),
        )
        .unwrap();
        let echo = descs
            .as_object()
            .unwrap()
            .values()
            .find(|d| d["sig"][0] == "echo")
            .unwrap();
        assert_eq!(
            echo["sig"],
            json!(["echo", "it", {"name": "val", "type": "CephString", "n": "N"}])
        );
        let out = request(
            &path,
            &json!({"prefix": "echo it", "val": ["a", "b"], "format": "json"}),
        )
        .await
        .unwrap();
        assert_eq!(out, r#"{"val":"a b"}"#);
        let out = request(&path, &json!({"prefix": "echo it"})).await.unwrap();
        assert_eq!(out, "ERROR: (22) Invalid argument\nno val\n");
        let out = request(&path, &json!({"prefix": "nope"})).await.unwrap();
        assert!(out.starts_with("ERROR: (22)"), "{out}");
        cancel.cancel();
        server.await.unwrap();
        assert!(!path.exists());
    }
}
