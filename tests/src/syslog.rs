//! A syslog collector over TCP, or TLS with a certificate of its own: reads RFC 6587
//! octet-counted frames and keeps each RFC 5424 message, parsed (PRI, version, timestamp,
//! host, app, procid, msgid, structured data, message).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::net::TcpListener;

/// One message as parsed.
#[derive(Debug, Clone)]
pub struct Message {
    pub pri: u16,
    pub version: u8,
    pub timestamp: String,
    pub host: String,
    pub app: String,
    pub procid: String,
    pub msgid: String,
    /// SD-ID → (param → value), escapes undone.
    pub data: BTreeMap<String, BTreeMap<String, String>>,
    pub msg: String,
}

/// Parses one RFC 5424 message; the error says where it does not conform.
pub fn parse(text: &str) -> Result<Message, String> {
    let rest = text.strip_prefix('<').ok_or("no PRI")?;
    let (pri, rest) = rest.split_once('>').ok_or("PRI not closed")?;
    let pri: u16 = pri.parse().map_err(|_| "PRI not a number")?;
    if pri > 191 {
        return Err("PRI out of range".into());
    }
    let mut fields = rest.splitn(7, ' ');
    let mut next = |what: &str| fields.next().map(str::to_owned).ok_or(format!("no {what}"));
    let version: u8 = next("VERSION")?.parse().map_err(|_| "VERSION")?;
    let timestamp = next("TIMESTAMP")?;
    if timestamp != "-" && rfc3339_shape(&timestamp).is_err() {
        return Err(format!("TIMESTAMP {timestamp:?} is not RFC 3339"));
    }
    let host = next("HOSTNAME")?;
    let app = next("APP-NAME")?;
    let procid = next("PROCID")?;
    let msgid = next("MSGID")?;
    let rest = next("STRUCTURED-DATA")?;
    let (data, msg) = structured_data(&rest)?;
    Ok(Message {
        pri,
        version,
        timestamp,
        host,
        app,
        procid,
        msgid,
        data,
        msg: msg.trim_start_matches('\u{feff}').to_owned(),
    })
}

fn rfc3339_shape(t: &str) -> Result<(), ()> {
    // YYYY-MM-DDTHH:MM:SS[.frac](Z|±hh:mm)
    let b = t.as_bytes();
    let ok = b.len() >= 20
        && b[4] == b'-'
        && b[7] == b'-'
        && b[10] == b'T'
        && b[13] == b':'
        && b[16] == b':'
        && (t.ends_with('Z')
            || t.as_bytes()[t.len() - 6] == b'+'
            || t.as_bytes()[t.len() - 6] == b'-');
    if ok { Ok(()) } else { Err(()) }
}

type Sd = BTreeMap<String, BTreeMap<String, String>>;

fn structured_data(text: &str) -> Result<(Sd, String), String> {
    let mut data = BTreeMap::new();
    if let Some(rest) = text.strip_prefix("- ") {
        return Ok((data, rest.to_owned()));
    }
    if text == "-" {
        return Ok((data, String::new()));
    }
    let chars: Vec<char> = text.chars().collect();
    let mut i = 0;
    while i < chars.len() && chars[i] == '[' {
        i += 1;
        let start = i;
        while i < chars.len() && chars[i] != ' ' && chars[i] != ']' {
            i += 1;
        }
        let id: String = chars[start..i].iter().collect();
        let mut params = BTreeMap::new();
        while i < chars.len() && chars[i] == ' ' {
            i += 1;
            let start = i;
            while i < chars.len() && chars[i] != '=' {
                i += 1;
            }
            let name: String = chars[start..i].iter().collect();
            if chars.get(i + 1) != Some(&'"') {
                return Err(format!("SD-PARAM {name} has no quoted value"));
            }
            i += 2;
            let mut value = String::new();
            loop {
                match chars.get(i) {
                    None => return Err("SD-PARAM value not closed".into()),
                    Some('\\') if matches!(chars.get(i + 1), Some('"' | '\\' | ']')) => {
                        value.push(chars[i + 1]);
                        i += 2;
                    }
                    Some('"') => {
                        i += 1;
                        break;
                    }
                    Some(']') => return Err("unescaped ] in SD-PARAM value".into()),
                    Some(c) => {
                        value.push(*c);
                        i += 1;
                    }
                }
            }
            params.insert(name, value);
        }
        if chars.get(i) != Some(&']') {
            return Err("SD-ELEMENT not closed".into());
        }
        i += 1;
        data.insert(id, params);
    }
    let msg: String = chars[i..].iter().collect();
    Ok((data, msg.strip_prefix(' ').unwrap_or(&msg).to_owned()))
}

/// A running collector; stops when dropped.
pub struct Collector {
    pub addr: SocketAddr,
    messages: Arc<Mutex<Vec<Result<Message, String>>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Collector {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Collector {
    /// A plain TCP collector on a free port.
    pub async fn tcp() -> std::io::Result<Collector> {
        Collector::start(None).await
    }

    /// A TLS collector with `config` (its certificate and key).
    pub async fn tls(config: Arc<rustls::ServerConfig>) -> std::io::Result<Collector> {
        Collector::start(Some(tokio_rustls::TlsAcceptor::from(config))).await
    }

    async fn start(tls: Option<tokio_rustls::TlsAcceptor>) -> std::io::Result<Collector> {
        let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
        let addr = listener.local_addr()?;
        let messages = Arc::new(Mutex::new(Vec::new()));
        let kept = Arc::clone(&messages);
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let kept = Arc::clone(&kept);
                let tls = tls.clone();
                tokio::spawn(async move {
                    match tls {
                        None => read_frames(stream, kept).await,
                        Some(acceptor) => {
                            if let Ok(stream) = acceptor.accept(stream).await {
                                read_frames(stream, kept).await;
                            }
                        }
                    }
                });
            }
        });
        Ok(Collector {
            addr,
            messages,
            task,
        })
    }

    /// Every message so far, each parsed or why it is not RFC 5424.
    pub fn messages(&self) -> Vec<Result<Message, String>> {
        self.messages
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// Reads `LEN SP MSG` frames until the connection ends.
async fn read_frames(
    mut stream: impl AsyncRead + Unpin,
    kept: Arc<Mutex<Vec<Result<Message, String>>>>,
) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16384];
    loop {
        let Ok(n) = stream.read(&mut chunk).await else {
            return;
        };
        if n == 0 {
            return;
        }
        buf.extend_from_slice(&chunk[..n]);
        while let Some(space) = buf.iter().position(|&b| b == b' ') {
            let Some(len) = std::str::from_utf8(&buf[..space])
                .ok()
                .and_then(|l| l.parse::<usize>().ok())
            else {
                kept.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(Err("a frame does not start with its length".into()));
                return;
            };
            if buf.len() < space + 1 + len {
                break;
            }
            let frame: Vec<u8> = buf.drain(..space + 1 + len).skip(space + 1).collect();
            let parsed = String::from_utf8(frame)
                .map_err(|_| "not UTF-8".to_owned())
                .and_then(|t| parse(&t));
            kept.lock().unwrap_or_else(|p| p.into_inner()).push(parsed);
        }
    }
}
