//! The daemon's admin socket, in Ceph's protocol so `ceph --admin-daemon <asok> <command>`
//! works as with rbd-mirror: the client writes a JSON command (`{"prefix": "..."}`)
//! ended by NUL, the daemon answers with a 4-byte big-endian length and the output. Commands
//! are looked up by their words; `get_command_descriptions` lists them the way the `ceph`
//! CLI validates input against.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};
use tokio_util::sync::CancellationToken;

/// A command handler: gets the parsed command, returns the output.
pub type Handler = Arc<dyn Fn(&Value) -> Result<String, String> + Send + Sync>;

#[derive(Clone, Default)]
pub struct Commands {
    /// prefix → (help, handler)
    table: BTreeMap<String, (String, Handler)>,
}

impl Commands {
    pub fn add(&mut self, prefix: &str, help: &str, handler: Handler) {
        self.table.insert(prefix.into(), (help.into(), handler));
    }

    fn run(&self, cmd: &Value) -> Result<String, String> {
        let prefix = cmd
            .get("prefix")
            .and_then(Value::as_str)
            .unwrap_or_default();
        match prefix {
            "get_command_descriptions" => Ok(self.descriptions().to_string()),
            "help" => Ok(json!(
                self.table
                    .iter()
                    .map(|(p, (h, _))| (p.clone(), h.clone()))
                    .collect::<BTreeMap<_, _>>()
            )
            .to_string()),
            "version" | "git_version" => Ok(
                json!({ "version": env!("CARGO_PKG_VERSION"), "name": "rbd-relay" }).to_string(),
            ),
            p => match self.table.get(p) {
                Some((_, h)) => h(cmd),
                None => Err(format!("unknown command '{p}'")),
            },
        }
    }

    fn descriptions(&self) -> Value {
        let mut out = serde_json::Map::new();
        let builtins = [
            ("get_command_descriptions", "list available commands"),
            ("help", "list available commands"),
            ("version", "get version"),
        ];
        let all = builtins
            .iter()
            .map(|(p, h)| (p.to_string(), h.to_string()))
            .chain(self.table.iter().map(|(p, (h, _))| (p.clone(), h.clone())));
        for (i, (prefix, help)) in all.enumerate() {
            let sig: Vec<Value> = prefix.split(' ').map(|w| json!(w)).collect();
            out.insert(
                format!("cmd{i:03}"),
                json!({ "sig": sig, "help": help, "module": "rbd-relay", "perm": "r",
                        "flags": 0 }),
            );
        }
        Value::Object(out)
    }
}

/// Serves `commands` on `path` until cancelled; removes the socket file on the way out.
pub async fn serve(
    path: PathBuf,
    commands: Commands,
    cancel: CancellationToken,
) -> std::io::Result<()> {
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(&path)?;
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
    let _ = std::fs::remove_file(&path);
    Ok(())
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
        Ok(cmd) => commands.run(&cmd).unwrap_or_else(|e| format!("ERROR: {e}")),
        Err(e) => format!("ERROR: bad command: {e}"),
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
