//! `GET /events`: server-sent events, each a `Notice` as JSON (or `lagged`, when the reader fell behind).

use chatmesh_node::events::Notice;
use serde::Deserialize;
use std::io::{BufRead, BufReader, Read};

/// One event of the stream.
#[derive(Clone, Debug, PartialEq)]
#[allow(clippy::large_enum_variant)] // one event at a time, matched by value: a box would only get in the way
pub enum Event {
    Notice(Notice),
    /// The stream skipped this many events (the reader was too slow): re-read `/status` and `/history`.
    Lagged {
        skipped: u64,
    },
}

#[derive(Deserialize)]
struct Lagged {
    skipped: u64,
}

impl Event {
    /// Parses an event's `data` given its `event` name.
    pub fn parse(event: &str, data: &str) -> Result<Event, String> {
        match event {
            "lagged" => serde_json::from_str::<Lagged>(data).map(|l| Event::Lagged { skipped: l.skipped }),
            _ => serde_json::from_str::<Notice>(data).map(Event::Notice),
        }
        .map_err(|e| format!("event {event}: {e}: {data}"))
    }
}

/// The stream of one subscription, read as it arrives (blocking).
pub struct EventStream {
    r: BufReader<Box<dyn Read + Send + Sync>>,
    line: String,
    event: String,
}

impl EventStream {
    pub fn new(stream: Box<dyn Read + Send + Sync>) -> EventStream {
        EventStream { r: BufReader::with_capacity(1 << 16, stream), line: String::new(), event: String::new() }
    }

    /// The next event's name and data, unparsed (`None` when the stream ends): for a reader that parses only
    /// what it needs of the busiest events.
    pub fn next_raw(&mut self) -> Option<(&str, &str)> {
        loop {
            self.line.clear();
            match self.r.read_line(&mut self.line) {
                Ok(0) | Err(_) => return None,
                Ok(_) => {}
            }
            let l = self.line.trim_end_matches(['\r', '\n']);
            if let Some(e) = l.strip_prefix("event:") {
                self.event = e.trim().to_string();
            } else if l.starts_with("data:") {
                break;
            }
        }
        let data = self.line.trim_end_matches(['\r', '\n']).strip_prefix("data:").unwrap_or_default();
        Some((&self.event, data.trim_start()))
    }
}

impl Iterator for EventStream {
    /// An event, or what could not be parsed (an event this client does not know).
    type Item = Result<Event, String>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_raw().map(|(event, data)| Event::parse(event, data))
    }
}
