//! Resumable event streams (Streamable HTTP, "Resumability and Redelivery"). Every event Warden
//! sends an agent on a POST's answer stream or on the session's GET stream carries an id,
//! `<tag>-<stream>-<n>`: the session's random tag (not its id), the stream's number in the
//! session (0 is the GET stream) and the event's number in the stream. Each stream holds the
//! events it sent, so an agent whose connection dropped GETs them again with `Last-Event-ID`:
//! the events of that stream after the id (never another stream's), then the rest live until
//! the stream ends. Meanwhile the call goes on and its events are held.
//!
//! Bounds: a stream holds its last [`MAX_EVENTS`] events and [`MAX_BYTES`] bytes (the newest
//! event always), a session its last [`MAX_STREAMS`] answer streams (an ended one is dropped
//! first) and [`SESSION_BYTES`] bytes of events in all (the oldest answer streams are dropped
//! first), and an ended stream is dropped `mcp.resume_window` after it ended, or with its
//! session. An answer stream whose last event (its response) the agent's connection took
//! holds nothing once it ends: nothing is left to resume. A response no connection took is settled then (its outcome record says the agent
//! never collected it), or as soon as a resuming agent collects it.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use bytes::Bytes;
use serde_json::Value;
use tokio::sync::mpsc;

use super::stream::{EventBody, event, identified_event};
use crate::text::Quoted;

/// Events one stream holds at most (the oldest are dropped first).
pub const MAX_EVENTS: usize = 256;
/// Bytes of events one stream holds at most (its newest event is held whatever its size).
pub const MAX_BYTES: usize = 1 << 20;
/// Answer streams one session holds at most, besides its GET stream.
pub const MAX_STREAMS: usize = 16;
/// Bytes of events one session holds at most over its streams: past it the oldest answer
/// streams are dropped (the stream being written and the GET stream are kept).
pub const SESSION_BYTES: usize = 17 << 20;
/// Events a resumed connection holds for a slow agent, beyond those it replays.
const LIVE_BUFFER: usize = 16;
/// The number of the session's GET stream.
const GET_STREAM: u64 = 0;

/// What becomes of a response no connection took: called once, with whether a resuming agent
/// collected it (`false` when its stream was dropped first).
pub type Settle = Box<dyn FnOnce(bool) + Send>;

/// Why a `Last-Event-ID` cannot be resumed.
#[derive(Debug, thiserror::Error)]
pub enum ResumeError {
    /// Not an id of the form Warden gives.
    #[error(
        "Last-Event-ID {0} is not an event id Warden gave (`<tag>-<stream>-<n>`); send it as the last `id:` of a stream received in this session, or GET without it for the session's stream"
    )]
    Malformed(Quoted),
    /// No stream of this session sent it (another session's id, or an event not sent yet).
    #[error(
        "Last-Event-ID {0} names no event this session sent; send the last `id:` of a stream received in this session, or GET without it for the session's stream"
    )]
    Unknown(Quoted),
    /// Its stream, or the events after it, were dropped from the bounded buffer.
    #[error(
        "the events after Last-Event-ID {id} are no longer held (a stream keeps its last {MAX_EVENTS} events, and an ended one {window_secs} s; mcp.resume_window): send the request again if repeating it is safe, or GET without Last-Event-ID for the session's stream"
    )]
    Gone {
        id: Quoted,
        /// `mcp.resume_window`, in seconds.
        window_secs: u64,
    },
}

/// The resumable streams of one session.
pub struct Replays {
    tag: u64,
    window: Duration,
    me: Weak<Replays>,
    /// The session's GET stream (never dropped while the session lasts).
    get: Arc<Stream>,
    streams: Mutex<Streams>,
    /// Bytes of events held over every stream.
    bytes: Arc<AtomicUsize>,
    /// The most bytes held before the oldest answer streams are dropped.
    budget: usize,
}

struct Streams {
    /// The next answer stream's number.
    next: u64,
    /// The answer streams held, oldest first.
    held: VecDeque<Arc<Stream>>,
    /// The session ended: new streams are not held.
    closed: bool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Replays {
    /// The streams of a new session; an ended stream is held for `window`.
    pub fn new(window: Duration) -> Arc<Replays> {
        Replays::with_budget(window, SESSION_BYTES)
    }

    /// As [`Replays::new`], holding at most `budget` bytes of events.
    fn with_budget(window: Duration, budget: usize) -> Arc<Replays> {
        let tag = rand::random::<u64>();
        let bytes = Arc::new(AtomicUsize::new(0));
        Arc::new_cyclic(|me: &Weak<Replays>| Replays {
            tag,
            window,
            me: me.clone(),
            get: Arc::new(Stream::new(tag, GET_STREAM, me.clone(), None, &bytes)),
            bytes,
            budget,
            streams: Mutex::new(Streams {
                next: GET_STREAM + 1,
                held: VecDeque::new(),
                closed: false,
            }),
        })
    }

    /// The session's GET stream.
    pub fn get_stream(&self) -> &Arc<Stream> {
        &self.get
    }

    /// A new answer stream, whose events go to `agent` while its connection lasts. Past
    /// [`MAX_STREAMS`], the oldest ended stream (else the oldest) is dropped.
    pub fn open(&self, agent: mpsc::Sender<Bytes>) -> Arc<Stream> {
        let (stream, dropped) = {
            let mut streams = lock(&self.streams);
            let dropped = if streams.held.len() >= MAX_STREAMS {
                let i = streams.held.iter().position(|s| s.ended()).unwrap_or(0);
                streams.held.remove(i)
            } else {
                None
            };
            let stream = Arc::new(Stream::new(
                self.tag,
                streams.next,
                self.me.clone(),
                Some(agent),
                &self.bytes,
            ));
            streams.next += 1;
            if streams.closed {
                lock(&stream.log).gone = true;
            } else {
                streams.held.push_back(Arc::clone(&stream));
            }
            (stream, dropped)
        };
        if let Some(dropped) = dropped {
            dropped.forget();
        }
        stream
    }

    /// The stream `last` (a `Last-Event-ID`) belongs to, and the event's number in it.
    pub fn find(&self, last: &str) -> Result<(Arc<Stream>, u64), ResumeError> {
        let (tag, number, n) =
            parse(last).ok_or_else(|| ResumeError::Malformed(Quoted::of(last)))?;
        if tag != self.tag {
            return Err(ResumeError::Unknown(Quoted::of(last)));
        }
        if number == GET_STREAM {
            return Ok((Arc::clone(&self.get), n));
        }
        let streams = lock(&self.streams);
        match streams.held.iter().find(|s| s.number == number) {
            Some(stream) => Ok((Arc::clone(stream), n)),
            None if number < streams.next => Err(self.gone(last)),
            None => Err(ResumeError::Unknown(Quoted::of(last))),
        }
    }

    fn gone(&self, last: &str) -> ResumeError {
        ResumeError::Gone {
            id: Quoted::of(last),
            window_secs: self.window.as_secs(),
        }
    }

    /// Drops every stream (the session ended): responses no agent collected are settled.
    pub fn close(&self) {
        let held = {
            let mut streams = lock(&self.streams);
            streams.closed = true;
            std::mem::take(&mut streams.held)
        };
        for stream in held {
            stream.forget();
        }
    }

    /// Past the session's budget: drops the oldest answer streams but `keep` (the one being
    /// written) until the events held fit.
    fn shed(&self, keep: u64) {
        let dropped: Vec<Arc<Stream>> = {
            let mut streams = lock(&self.streams);
            let mut over = self
                .bytes
                .load(Ordering::Acquire)
                .saturating_sub(self.budget);
            let mut dropped = Vec::new();
            let mut i = 0;
            while over > 0 && i < streams.held.len() {
                if streams.held[i].number == keep {
                    i += 1;
                    continue;
                }
                if let Some(stream) = streams.held.remove(i) {
                    over = over.saturating_sub(lock(&stream.log).bytes);
                    dropped.push(stream);
                }
            }
            dropped
        };
        for stream in dropped {
            stream.forget();
        }
    }

    /// Drops answer stream `number` (its window after it ended passed).
    fn expire(&self, number: u64) {
        let expired = {
            let mut streams = lock(&self.streams);
            let i = streams.held.iter().position(|s| s.number == number);
            i.and_then(|i| streams.held.remove(i))
        };
        if let Some(stream) = expired {
            stream.forget();
        }
    }
}

/// `<tag>-<stream>-<n>` read back.
fn parse(id: &str) -> Option<(u64, u64, u64)> {
    let mut parts = id.split('-');
    let tag = parts.next().filter(|t| t.len() == 16)?;
    let tag = u64::from_str_radix(tag, 16).ok()?;
    let number = parts.next()?.parse().ok()?;
    let n = parts.next()?.parse().ok()?;
    parts.next().is_none().then_some((tag, number, n))
}

/// One stream of events to an agent, held for resumption.
pub struct Stream {
    tag: u64,
    number: u64,
    replays: Weak<Replays>,
    log: Mutex<Log>,
    /// The session's count of bytes held.
    held: Arc<AtomicUsize>,
}

struct Log {
    /// The events held, by number, oldest first.
    events: VecDeque<(u64, Bytes)>,
    bytes: usize,
    /// The next event's number.
    next: u64,
    /// The connection the agent reads now, if any.
    agent: Option<mpsc::Sender<Bytes>>,
    ended: bool,
    /// Dropped from its session: nothing more is held.
    gone: bool,
    /// The agent's connection took the newest event.
    last_taken: bool,
    /// What becomes of the response no connection took.
    settle: Option<Settle>,
}

impl Drop for Log {
    fn drop(&mut self) {
        if let Some(settle) = self.settle.take() {
            settle(false);
        }
    }
}

impl Stream {
    fn new(
        tag: u64,
        number: u64,
        replays: Weak<Replays>,
        agent: Option<mpsc::Sender<Bytes>>,
        held: &Arc<AtomicUsize>,
    ) -> Stream {
        Stream {
            tag,
            number,
            replays,
            log: Mutex::new(Log {
                events: VecDeque::new(),
                bytes: 0,
                next: 0,
                agent,
                ended: false,
                gone: false,
                last_taken: false,
                settle: None,
            }),
            held: Arc::clone(held),
        }
    }

    /// Drops every event held.
    fn clear(&self, log: &mut Log) {
        log.events.clear();
        self.held.fetch_sub(log.bytes, Ordering::AcqRel);
        log.bytes = 0;
    }

    /// The agent's connection took event `n`.
    fn taken(&self, n: u64) {
        let mut log = lock(&self.log);
        if log.next == n + 1 {
            log.last_taken = true;
        }
    }

    fn ended(&self) -> bool {
        lock(&self.log).ended
    }

    /// Sends `message` as the stream's next event: held, and given to the agent's connection
    /// while it has one. Whether that connection took it.
    pub async fn send(&self, message: &Value) -> bool {
        let (n, event, agent) = self.hold(message);
        let Some(agent) = agent else {
            return false;
        };
        if agent.send(event).await.is_ok() {
            self.taken(n);
            return true;
        }
        self.lost(&agent);
        false
    }

    /// As [`Stream::send`], without waiting for room on the connection.
    pub fn try_send(&self, message: &Value) -> bool {
        let (n, event, agent) = self.hold(message);
        let taken = agent.is_some_and(|agent| agent.try_send(event).is_ok());
        if taken {
            self.taken(n);
        }
        taken
    }

    /// The next event (its number), held, and the connection it goes to. Past the session's
    /// budget, its oldest answer streams are dropped.
    fn hold(&self, message: &Value) -> (u64, Bytes, Option<mpsc::Sender<Bytes>>) {
        let (n, event, agent, grown) = {
            let mut log = lock(&self.log);
            let n = log.next;
            log.next += 1;
            log.last_taken = false;
            let event = identified_event(self.tag, self.number, n, message);
            let before = log.bytes;
            if !log.gone {
                log.bytes += event.len();
                log.events.push_back((n, event.clone()));
                while log.events.len() > MAX_EVENTS
                    || (log.bytes > MAX_BYTES && log.events.len() > 1)
                {
                    if let Some((_, dropped)) = log.events.pop_front() {
                        log.bytes -= dropped.len();
                    }
                }
            }
            let after = log.bytes;
            if after >= before {
                self.held.fetch_add(after - before, Ordering::AcqRel);
            } else {
                self.held.fetch_sub(before - after, Ordering::AcqRel);
            }
            (n, event, log.agent.clone(), after > before)
        };
        if grown
            && let Some(replays) = self.replays.upgrade()
            && self.held.load(Ordering::Acquire) > replays.budget
        {
            replays.shed(self.number);
        }
        (n, event, agent)
    }

    /// The connection `agent` is gone: later events are only held.
    fn lost(&self, agent: &mpsc::Sender<Bytes>) {
        let mut log = lock(&self.log);
        if log.agent.as_ref().is_some_and(|a| a.same_channel(agent)) {
            log.agent = None;
        }
    }

    /// A new connection to the agent, without the events sent before (a GET without
    /// `Last-Event-ID`); an earlier connection ends.
    pub fn attach(&self) -> (mpsc::Sender<Bytes>, EventBody) {
        let (tx, body) = EventBody::channel(LIVE_BUFFER);
        lock(&self.log).agent = Some(tx.clone());
        (tx, body)
    }

    /// The connection ends (its events are only held until another attaches).
    pub fn detach(&self) {
        lock(&self.log).agent = None;
    }

    /// A connection for an agent that received event `after` (`last`, its id): the events
    /// since, then the rest live until the stream ends; an earlier connection ends.
    pub fn resume(
        &self,
        after: u64,
        last: &str,
    ) -> Result<(mpsc::Sender<Bytes>, EventBody), ResumeError> {
        let gone = || match self.replays.upgrade() {
            Some(replays) => replays.gone(last),
            None => ResumeError::Unknown(Quoted::of(last)),
        };
        let (tx, body, settle) = {
            let mut log = lock(&self.log);
            if log.gone {
                return Err(gone());
            }
            if after >= log.next {
                return Err(ResumeError::Unknown(Quoted::of(last)));
            }
            let first = log.events.front().map_or(log.next, |(n, _)| *n);
            if after + 1 < first {
                return Err(gone());
            }
            let missed = log.events.iter().filter(|(n, _)| *n > after);
            let (tx, body) = EventBody::channel(missed.clone().count() + LIVE_BUFFER);
            let mut replayed = false;
            for (_, event) in missed {
                replayed = tx.try_send(event.clone()).is_ok() || replayed;
            }
            // A stream that ended took its last event with it: the response.
            let settle = if log.ended && replayed {
                log.settle.take()
            } else {
                None
            };
            if !log.ended {
                log.agent = Some(tx.clone());
            }
            (tx, body, settle)
        };
        if let Some(settle) = settle {
            settle(true);
        }
        Ok((tx, body))
    }

    /// The stream ended: its connection ends once it has what was sent. `settle`, for a
    /// response no connection took, runs when a resuming agent collects it or when the stream
    /// is dropped; the stream is dropped `mcp.resume_window` from now.
    pub fn end(&self, settle: Option<Settle>) {
        let now = {
            let mut log = lock(&self.log);
            log.ended = true;
            log.agent = None;
            if log.last_taken && settle.is_none() {
                // The agent's connection took the response: nothing is left to resume, and
                // a resume names events no longer held (`Gone`).
                self.clear(&mut log);
            }
            if log.gone {
                settle
            } else {
                log.settle = settle;
                None
            }
        };
        if let Some(settle) = now {
            settle(false);
        }
        let Some(window) = self.replays.upgrade().map(|r| r.window) else {
            return;
        };
        let replays = self.replays.clone();
        let number = self.number;
        tokio::spawn(async move {
            tokio::time::sleep(window).await;
            if let Some(replays) = replays.upgrade() {
                replays.expire(number);
            }
        });
    }

    /// Dropped from its session: nothing more is held, and a response no connection took is
    /// settled as never collected.
    fn forget(&self) {
        let settle = {
            let mut log = lock(&self.log);
            log.gone = true;
            self.clear(&mut log);
            log.settle.take()
        };
        if let Some(settle) = settle {
            settle(false);
        }
    }
}

/// Where the events of an answer go: straight to the agent's connection (the legacy transport,
/// which has no resumption), or through a resumable stream.
pub enum Outlet {
    Direct(mpsc::Sender<Bytes>),
    Resumable(Arc<Stream>),
}

impl Outlet {
    /// Sends `message`; whether the agent's connection took it.
    pub async fn send(&self, message: &Value) -> bool {
        match self {
            Outlet::Direct(tx) => !tx.is_closed() && tx.send(event(message)).await.is_ok(),
            Outlet::Resumable(stream) => stream.send(message).await,
        }
    }

    /// The answer ended; `settle` as for [`Stream::end`] (at once, uncollected, when direct).
    pub fn end(self, settle: Option<Settle>) {
        match self {
            Outlet::Direct(_) => {
                if let Some(settle) = settle {
                    settle(false);
                }
            }
            Outlet::Resumable(stream) => stream.end(settle),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::sync::atomic::{AtomicU8, Ordering};

    /// The ids of the events in `body` until it ends or pauses.
    async fn ids(body: &mut EventBody) -> Vec<String> {
        let mut ids = Vec::new();
        while let Ok(Some(chunk)) =
            tokio::time::timeout(Duration::from_millis(50), body.next()).await
        {
            let text = String::from_utf8_lossy(&chunk).into_owned();
            let id = text.lines().find_map(|l| l.strip_prefix("id: ")).unwrap();
            ids.push(id.to_owned());
        }
        ids
    }

    fn number(id: &str) -> u64 {
        id.rsplit('-').next().unwrap().parse().unwrap()
    }

    /// The id of event `n` of stream `stream` of `replays`.
    fn id_of(replays: &Replays, stream: u64, n: u64) -> String {
        format!("{:016x}-{stream}-{n}", replays.tag)
    }

    /// A new answer stream whose agent's connection is already gone.
    fn agent_gone(replays: &Replays) -> Arc<Stream> {
        let (tx, body) = EventBody::channel(1);
        let stream = replays.open(tx);
        drop(body);
        stream
    }

    /// Records in `settled` how `settle` was called: 1 collected, 2 never collected.
    fn settle_into(settled: &Arc<AtomicU8>) -> Settle {
        let settled = Arc::clone(settled);
        Box::new(move |collected| settled.store(if collected { 1 } else { 2 }, Ordering::SeqCst))
    }

    #[tokio::test]
    async fn mcp_resume_replays_only_the_events_after_the_id_then_goes_on_live() {
        let replays = Replays::new(Duration::from_secs(60));
        let (tx, mut first) = EventBody::channel(8);
        let stream = replays.open(tx);
        for n in 0..3 {
            assert!(stream.send(&json!({"n": n})).await);
        }
        let seen = ids(&mut first).await;
        assert_eq!(seen.len(), 3);
        drop(first);
        // The connection dropped: the next events are only held.
        assert!(!stream.send(&json!({"n": 3})).await);
        assert!(!stream.send(&json!({"n": 4})).await);
        let (held, n) = replays.find(&seen[1]).unwrap();
        let (_tx, mut resumed) = held.resume(n, &seen[1]).unwrap();
        assert!(stream.send(&json!({"n": 5})).await, "live after the replay");
        let again: Vec<u64> = ids(&mut resumed).await.iter().map(|i| number(i)).collect();
        assert_eq!(again, [2, 3, 4, 5]);
    }

    #[tokio::test]
    async fn mcp_resume_of_the_get_stream_replays_what_its_last_connection_missed() {
        let replays = Replays::new(Duration::from_secs(60));
        let get = Arc::clone(replays.get_stream());
        let (tx, body) = get.attach();
        for n in 0..3 {
            assert!(get.send(&json!({"n": n})).await);
        }
        // The agent read only the first before its connection dropped.
        drop((tx, body));
        get.detach();
        let last = id_of(&replays, 0, 0);
        let (held, n) = replays.find(&last).unwrap();
        assert!(Arc::ptr_eq(&held, replays.get_stream()));
        let (_tx, mut resumed) = held.resume(n, &last).unwrap();
        let again: Vec<u64> = ids(&mut resumed).await.iter().map(|i| number(i)).collect();
        assert_eq!(again, [1, 2]);
        assert!(get.send(&json!({"n": 3})).await, "then live");
    }

    #[tokio::test]
    async fn mcp_resume_of_an_ended_stream_settles_its_response_as_collected_and_ends() {
        let replays = Replays::new(Duration::from_secs(60));
        let stream = agent_gone(&replays);
        assert!(!stream.send(&json!({"progress": 1})).await);
        assert!(!stream.send(&json!({"result": {}})).await);
        let settled = Arc::new(AtomicU8::new(0));
        stream.end(Some(settle_into(&settled)));
        let last = id_of(&replays, 1, 0);
        let (held, n) = replays.find(&last).unwrap();
        let (tx, mut resumed) = held.resume(n, &last).unwrap();
        drop(tx);
        assert_eq!(ids(&mut resumed).await.len(), 1);
        assert!(
            resumed.next().await.is_none(),
            "an ended stream's connection ends"
        );
        assert_eq!(settled.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn mcp_resume_refuses_ids_of_no_stream_of_this_session() {
        let replays = Replays::new(Duration::from_secs(60));
        let other = Replays::new(Duration::from_secs(60));
        agent_gone(&replays).send(&json!({})).await;
        agent_gone(&other).send(&json!({})).await;
        let theirs = id_of(&other, 1, 0);
        assert!(matches!(
            replays.find(&theirs),
            Err(ResumeError::Unknown(_))
        ));
        for malformed in [
            "",
            "7",
            "abc-1-0",
            &format!("{:016x}-1", replays.tag),
            &format!("{:016x}-1-0-0", replays.tag),
        ] {
            assert!(
                matches!(replays.find(malformed), Err(ResumeError::Malformed(_))),
                "{malformed}"
            );
        }
        let unopened = id_of(&replays, 9, 0);
        assert!(matches!(
            replays.find(&unopened),
            Err(ResumeError::Unknown(_))
        ));
        let unsent = id_of(&replays, 1, 5);
        let (held, n) = replays.find(&unsent).unwrap();
        assert!(matches!(
            held.resume(n, &unsent),
            Err(ResumeError::Unknown(_))
        ));
    }

    #[tokio::test]
    async fn mcp_resume_never_replays_another_streams_events() {
        let replays = Replays::new(Duration::from_secs(60));
        let a = agent_gone(&replays);
        let b = agent_gone(&replays);
        a.send(&json!({"a": 0})).await;
        b.send(&json!({"b": 0})).await;
        a.send(&json!({"a": 1})).await;
        b.send(&json!({"b": 1})).await;
        let last = id_of(&replays, 1, 0);
        let (held, n) = replays.find(&last).unwrap();
        let (_tx, mut resumed) = held.resume(n, &last).unwrap();
        let chunk = resumed.next().await.unwrap();
        let text = String::from_utf8_lossy(&chunk);
        assert!(text.contains(r#"{"a":1}"#), "{text}");
        assert!(
            tokio::time::timeout(Duration::from_millis(50), resumed.next())
                .await
                .is_err(),
            "nothing of stream 2"
        );
    }

    #[tokio::test]
    async fn mcp_resume_holds_a_bounded_number_of_events_and_says_when_they_are_gone() {
        let replays = Replays::new(Duration::from_secs(60));
        let stream = agent_gone(&replays);
        for n in 0..MAX_EVENTS + 10 {
            stream.send(&json!({"n": n})).await;
        }
        let log_len = lock(&stream.log).events.len();
        assert_eq!(log_len, MAX_EVENTS);
        let dropped = id_of(&replays, 1, 5);
        let (held, n) = replays.find(&dropped).unwrap();
        assert!(matches!(
            held.resume(n, &dropped),
            Err(ResumeError::Gone { .. })
        ));
        let kept = id_of(&replays, 1, 9);
        let (held, n) = replays.find(&kept).unwrap();
        assert!(
            held.resume(n, &kept).is_ok(),
            "the oldest event held follows 9"
        );
    }

    #[tokio::test]
    async fn mcp_resume_holds_a_bounded_number_of_bytes_but_always_the_newest_event() {
        let replays = Replays::new(Duration::from_secs(60));
        let stream = agent_gone(&replays);
        let big = "x".repeat(MAX_BYTES / 3);
        for _ in 0..4 {
            stream.send(&json!({"big": big})).await;
        }
        {
            let log = lock(&stream.log);
            assert_eq!(log.events.len(), 2);
            assert!(log.bytes <= MAX_BYTES);
        }
        stream.send(&json!({"bigger": "y".repeat(MAX_BYTES)})).await;
        let log = lock(&stream.log);
        assert_eq!(
            log.events.len(),
            1,
            "the newest event stays whatever its size"
        );
    }

    #[tokio::test]
    async fn mcp_resume_drops_the_oldest_ended_stream_past_the_bound_and_settles_it_uncollected() {
        let replays = Replays::new(Duration::from_secs(60));
        let settled = Arc::new(AtomicU8::new(0));
        let mut streams = Vec::new();
        for i in 0..MAX_STREAMS {
            let stream = agent_gone(&replays);
            stream.send(&json!({"result": i})).await;
            streams.push(stream);
        }
        streams[3].end(Some(settle_into(&settled)));
        agent_gone(&replays);
        assert_eq!(
            settled.load(Ordering::SeqCst),
            2,
            "dropped, never collected"
        );
        let fourth = id_of(&replays, 4, 0);
        assert!(matches!(
            replays.find(&fourth),
            Err(ResumeError::Gone { .. })
        ));
        let first = id_of(&replays, 1, 0);
        assert!(replays.find(&first).is_ok(), "a live stream is kept");
    }

    #[tokio::test]
    async fn mcp_resume_holds_nothing_of_a_stream_whose_response_the_agent_took() {
        let replays = Replays::new(Duration::from_secs(60));
        let (tx, mut body) = EventBody::channel(8);
        let stream = replays.open(tx);
        assert!(
            stream
                .send(&json!({"method": "notifications/progress"}))
                .await
        );
        assert!(
            stream
                .send(&json!({"result": {"big": "x".repeat(4096)}}))
                .await
        );
        assert!(replays.bytes.load(Ordering::SeqCst) > 4096);
        stream.end(None);
        assert_eq!(ids(&mut body).await.len(), 2);
        assert_eq!(replays.bytes.load(Ordering::SeqCst), 0, "nothing held");
        let first = id_of(&replays, 1, 0);
        let (held, n) = replays.find(&first).unwrap();
        assert!(matches!(
            held.resume(n, &first),
            Err(ResumeError::Gone { .. })
        ));

        // A response the connection did not take stays held for a resuming agent.
        let stream = agent_gone(&replays);
        stream.send(&json!({"result": {}})).await;
        let settled = Arc::new(AtomicU8::new(0));
        stream.end(Some(settle_into(&settled)));
        assert!(replays.bytes.load(Ordering::SeqCst) > 0);
    }

    #[tokio::test]
    async fn mcp_resume_drops_the_oldest_streams_past_the_session_budget() {
        let replays = Replays::with_budget(Duration::from_secs(60), 10_000);
        let big = json!({"result": {"text": "x".repeat(4000)}});
        let streams: Vec<Arc<Stream>> = (0..4).map(|_| agent_gone(&replays)).collect();
        for stream in &streams {
            stream.send(&big).await;
            let held = replays.bytes.load(Ordering::SeqCst);
            assert!(held <= 10_000, "{held} bytes held past the budget");
        }
        // The two oldest were dropped (a resume of them is told so), the newest kept.
        for (number, kept) in [(1, false), (2, false), (3, true), (4, true)] {
            let id = id_of(&replays, number, 0);
            match replays.find(&id) {
                Ok((stream, n)) => {
                    assert!(kept, "stream {number} is still held");
                    assert!(stream.resume(n, &id).is_ok(), "stream {number} resumes");
                }
                Err(e) => {
                    assert!(!kept, "stream {number}: {e}");
                    assert!(matches!(e, ResumeError::Gone { .. }), "{e}");
                }
            }
        }
        // One event larger than the budget is still held, alone.
        let huge = json!({"result": {"text": "y".repeat(20_000)}});
        let last = agent_gone(&replays);
        last.send(&huge).await;
        assert!(replays.find(&id_of(&replays, 5, 0)).is_ok());
        assert!(matches!(
            replays.find(&id_of(&replays, 4, 0)),
            Err(ResumeError::Gone { .. })
        ));
    }

    #[tokio::test]
    async fn mcp_resume_drops_an_ended_stream_after_its_window() {
        let replays = Replays::new(Duration::from_millis(200));
        let stream = agent_gone(&replays);
        stream.send(&json!({"result": {}})).await;
        let settled = Arc::new(AtomicU8::new(0));
        stream.end(Some(settle_into(&settled)));
        let id = id_of(&replays, 1, 0);
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(replays.find(&id).is_ok());
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(matches!(replays.find(&id), Err(ResumeError::Gone { .. })));
        assert_eq!(settled.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn mcp_resume_of_a_closed_session_settles_what_was_never_collected() {
        let replays = Replays::new(Duration::from_secs(60));
        let stream = agent_gone(&replays);
        stream.send(&json!({"result": {}})).await;
        let settled = Arc::new(AtomicU8::new(0));
        stream.end(Some(settle_into(&settled)));
        replays.close();
        assert_eq!(settled.load(Ordering::SeqCst), 2);
    }
}
