//! The durable store: one SQLite database per node (WAL, `synchronous=FULL`), holding the node's identity,
//! its membership snapshot, its messages and the history summary that goes with them.
//!
//! Every `Output::Persist` and `Output::Store` of the core maps to a `Write`; a driver collects the writes
//! of one drain and commits them in one transaction (group commit) before carrying out anything the core
//! emitted after them. That is the core's output-ordering contract: what a node acknowledges or shows as
//! sent is durable first. The history summary also carries what each peer acknowledged of this node's own
//! messages (`HistoryState::acked`), so acknowledgements cost no write of their own: they ride with the
//! next one (or a summary-only `Store` at a quiet retransmission tick).

use chatmesh_core::{Body, HistoryState, LoadRequest, Message, NodeKey, OrderKey, Snapshot};
use rusqlite::{params, Connection, OpenFlags, OptionalExtension};
use std::fmt;
use std::path::{Path, PathBuf};

/// `PRAGMA application_id` of a ChatMesh database ("CHMS"): a database without it is someone else's.
const APPLICATION_ID: i32 = 0x4348_4d53;
/// The schema this build writes; older ones are migrated, newer ones refused.
pub const SCHEMA_VERSION: i32 = 4;

/// What went wrong with the store. Every variant names the database file; nothing is ever reset silently.
#[derive(Debug)]
pub enum StoreError {
    /// The file could not be opened or created.
    Open { path: PathBuf, source: rusqlite::Error },
    /// The file is not a SQLite database, or is damaged.
    Corrupt { path: PathBuf, detail: String },
    /// A SQLite database of another program.
    Foreign { path: PathBuf },
    /// Written by a newer ChatMesh; this build does not know its schema.
    NewerSchema { path: PathBuf, found: i32 },
    /// Read-only: an older schema, which only a node of this build (opening it to write) migrates.
    OlderSchema { path: PathBuf, found: i32 },
    /// Read-only: there is no database at the path (nothing was created).
    Missing { path: PathBuf },
    /// A stored value that does not decode (damage, or a bug).
    BadRecord { path: PathBuf, what: &'static str, detail: String },
    /// Any other SQLite error.
    Sql { path: PathBuf, source: rusqlite::Error },
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::Open { path, source } => write!(f, "cannot open the database {}: {source}", path.display()),
            StoreError::Corrupt { path, detail } => write!(
                f,
                "{} is not a usable database ({detail}); move it aside to start afresh, or restore a backup",
                path.display()
            ),
            StoreError::Foreign { path } => write!(
                f,
                "{} is a SQLite database of another program, not a ChatMesh one; refusing to touch it",
                path.display()
            ),
            StoreError::NewerSchema { path, found } => write!(
                f,
                "{} has schema version {found}, newer than this build's {SCHEMA_VERSION}: use a newer chatmesh",
                path.display()
            ),
            StoreError::OlderSchema { path, found } => write!(
                f,
                "{} has schema version {found}, older than this build's {SCHEMA_VERSION}: start its node once with \
                 this build to migrate it (reading never writes)",
                path.display()
            ),
            StoreError::Missing { path } => write!(f, "there is no ChatMesh database at {}", path.display()),
            StoreError::BadRecord { path, what, detail } => {
                write!(f, "{}: stored {what} does not decode ({detail})", path.display())
            }
            StoreError::Sql { path, source } => write!(f, "database {}: {source}", path.display()),
        }
    }
}

impl std::error::Error for StoreError {}

/// One durable write the core asked for.
#[derive(Clone, Debug)]
pub enum Write {
    /// `Output::Persist`.
    Snapshot(Snapshot),
    /// `Output::Store`.
    Messages { messages: Vec<Message>, state: HistoryState },
    /// The node's name (`/nick`), with the configured name it was chosen under (`Store::name`).
    Name { name: String, configured: String },
}

pub struct Store {
    conn: Connection,
    path: PathBuf,
}

impl Store {
    /// Opens (or creates) the database at `path`, checks it is ChatMesh's, and migrates its schema.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let path = path.to_path_buf();
        let fresh = !path.exists();
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(&path, flags)
            .map_err(|source| StoreError::Open { path: path.clone(), source })?;
        if fresh {
            restrict_permissions(&path);
        }
        let store = Store { conn, path };
        store.check_and_migrate()?;
        Ok(store)
    }

    /// Opens an existing database for reading only: safe while its node runs (WAL: readers neither block
    /// the writer nor see a half-done commit). Never creates, migrates or writes the file; refuses a
    /// missing file, someone else's database and any schema but this build's.
    pub fn open_read_only(path: &Path) -> Result<Store, StoreError> {
        let path = path.to_path_buf();
        // Checked here, not left to SQLite, so that the error says what is missing.
        if !path.is_file() {
            return Err(StoreError::Missing { path });
        }
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(&path, flags)
            .map_err(|source| StoreError::Open { path: path.clone(), source })?;
        let store = Store { conn, path };
        store.check_read_only()?;
        Ok(store)
    }

    /// `(application_id, user_version, number of tables)`: whose the file is, and its schema.
    fn header(&self) -> Result<(i32, i32, i64), StoreError> {
        let app: i32 = self.conn.query_row("PRAGMA application_id", [], |r| r.get(0)).map_err(|e| self.sql(e))?;
        let version: i32 = self.conn.query_row("PRAGMA user_version", [], |r| r.get(0)).map_err(|e| self.sql(e))?;
        let tables: i64 = self
            .conn
            .query_row("SELECT count(*) FROM sqlite_master WHERE type = 'table'", [], |r| r.get(0))
            .map_err(|e| self.sql(e))?;
        Ok((app, version, tables))
    }

    fn check_read_only(&self) -> Result<(), StoreError> {
        let (app, version, tables) = self.header()?;
        if app == 0 && tables == 0 {
            // SQLite takes an empty file for an empty database: a node never leaves one behind.
            let detail = "empty: no ChatMesh data in it".to_owned();
            return Err(StoreError::Corrupt { path: self.path.clone(), detail });
        }
        if app != APPLICATION_ID {
            return Err(StoreError::Foreign { path: self.path.clone() });
        }
        match version.cmp(&SCHEMA_VERSION) {
            std::cmp::Ordering::Greater => Err(StoreError::NewerSchema { path: self.path.clone(), found: version }),
            std::cmp::Ordering::Less => Err(StoreError::OlderSchema { path: self.path.clone(), found: version }),
            std::cmp::Ordering::Equal => Ok(()),
        }
    }

    /// Runs `read` in one read transaction, so that everything it reads is of one moment: a node writing
    /// meanwhile commits messages and their summary together, and `read` sees both or neither.
    pub fn read_consistent<T, E: From<StoreError>>(&self, read: impl FnOnce(&Store) -> Result<T, E>) -> Result<T, E> {
        let tx = self.conn.unchecked_transaction().map_err(|e| self.sql(e))?;
        let out = read(self);
        // Only read: ending the transaction either way changes nothing.
        drop(tx);
        out
    }

    /// Calls `each` with every message of the history in canonical order, decoded one at a time (a long
    /// history is never held whole); stops at the first error `each` returns.
    pub fn for_each_message<E: From<StoreError>>(
        &self,
        mut each: impl FnMut(Message) -> Result<(), E>,
    ) -> Result<(), E> {
        let sql = "SELECT message FROM messages ORDER BY lamport, author, seq";
        let mut q = self.conn.prepare_cached(sql).map_err(|e| self.sql(e))?;
        let mut rows = q.query([]).map_err(|e| self.sql(e))?;
        while let Some(row) = rows.next().map_err(|e| self.sql(e))? {
            let blob: Vec<u8> = row.get(0).map_err(|e| self.sql(e))?;
            each(postcard::from_bytes(&blob).map_err(|e| self.bad("message", &e.to_string()))?)?;
        }
        Ok(())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn sql(&self, source: rusqlite::Error) -> StoreError {
        match source {
            rusqlite::Error::SqliteFailure(e, ref msg)
                if matches!(e.code, rusqlite::ErrorCode::NotADatabase | rusqlite::ErrorCode::DatabaseCorrupt) =>
            {
                let detail = msg.clone().unwrap_or_else(|| e.to_string());
                StoreError::Corrupt { path: self.path.clone(), detail }
            }
            source => StoreError::Sql { path: self.path.clone(), source },
        }
    }

    fn check_and_migrate(&self) -> Result<(), StoreError> {
        let (app, version, tables) = self.header()?;
        if app != APPLICATION_ID && (app != 0 || tables > 0) {
            return Err(StoreError::Foreign { path: self.path.clone() });
        }
        if version > SCHEMA_VERSION {
            return Err(StoreError::NewerSchema { path: self.path.clone(), found: version });
        }
        // WAL: readers do not block the writer; FULL: a commit is on disk before it returns, so what was
        // acknowledged survives a power loss too, not only a crash of the process.
        self.conn
            .execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;")
            .map_err(|e| self.sql(e))?;
        if version < 1 {
            self.conn
                .execute_batch(&format!(
                    "BEGIN;
                     CREATE TABLE meta (key TEXT PRIMARY KEY, value BLOB NOT NULL) WITHOUT ROWID;
                     CREATE TABLE messages (
                         author BLOB NOT NULL, seq INTEGER NOT NULL, lamport INTEGER NOT NULL, message BLOB NOT NULL,
                         PRIMARY KEY (author, seq)) WITHOUT ROWID;
                     CREATE INDEX messages_canonical ON messages (lamport, author, seq);
                     PRAGMA application_id = {APPLICATION_ID};
                     PRAGMA user_version = 1;
                     COMMIT;"
                ))
                .map_err(|e| self.sql(e))?;
        }
        if version < 2 {
            // Version 2: a message ends with its batch proof (`Message::proof`). A message stored before is
            // the same encoding without it: appending an empty list (one zero byte) makes it a version 2 one.
            // (`||` makes text of the same bytes, zeros included; the cast makes it a blob again.)
            self.migrate(2, "UPDATE messages SET message = CAST(message || x'00' AS BLOB)")?;
        }
        if version < 3 {
            // Version 3: the history summary ends with what each peer acknowledged of our own messages
            // (`HistoryState::acked`). A summary stored before is the same encoding without it: an empty map
            // (one zero byte) appended makes it a version 3 one, and the statuses are learnt again from the
            // peers' frontiers.
            self.migrate(3, "UPDATE meta SET value = CAST(value || x'00' AS BLOB) WHERE key = 'history'")?;
        }
        if version < 4 {
            self.migrate_to_4()?;
        }
        Ok(())
    }

    /// Brings the schema to `version` with `change`, in one transaction. The version is read again under
    /// the write lock, so that two processes opening the file at once never apply a change twice.
    fn migrate(&self, version: i32, change: &str) -> Result<(), StoreError> {
        self.conn.execute_batch("BEGIN IMMEDIATE").map_err(|e| self.sql(e))?;
        let apply = || -> rusqlite::Result<()> {
            let found: i32 = self.conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
            if found < version {
                self.conn.execute(change, [])?;
                self.conn.execute_batch(&format!("PRAGMA user_version = {version}"))?;
            }
            Ok(())
        };
        match apply() {
            Ok(()) => self.conn.execute_batch("COMMIT").map_err(|e| self.sql(e)),
            Err(e) => {
                let _ = self.conn.execute_batch("ROLLBACK");
                Err(self.sql(e))
            }
        }
    }

    /// Version 4: messages carry an `event` flag (1 for a membership event), indexed, so that the names the
    /// history gives (`Store::membership_events`) are read without decoding every chat message. The flag of
    /// a message stored before is found by decoding it, once.
    fn migrate_to_4(&self) -> Result<(), StoreError> {
        self.conn.execute_batch("BEGIN IMMEDIATE").map_err(|e| self.sql(e))?;
        let migrate = || -> Result<(), StoreError> {
            let sql = |e| self.sql(e);
            let version: i32 = self.conn.query_row("PRAGMA user_version", [], |r| r.get(0)).map_err(sql)?;
            if version >= 4 {
                return Ok(());
            }
            let has_flag: bool = self
                .conn
                .query_row("SELECT count(*) FROM pragma_table_info('messages') WHERE name = 'event'", [], |r| r.get(0))
                .map_err(sql)?;
            if !has_flag {
                self.conn
                    .execute_batch("ALTER TABLE messages ADD COLUMN event INTEGER NOT NULL DEFAULT 0")
                    .map_err(sql)?;
            }
            self.conn
                .execute_batch(
                    "CREATE INDEX IF NOT EXISTS messages_events ON messages (lamport, author, seq) WHERE event = 1",
                )
                .map_err(sql)?;
            let mut events = Vec::new();
            {
                let mut q = self.conn.prepare("SELECT author, seq, message FROM messages").map_err(sql)?;
                let mut rows = q.query([]).map_err(sql)?;
                while let Some(row) = rows.next().map_err(sql)? {
                    let blob: Vec<u8> = row.get(2).map_err(sql)?;
                    let m: Message = postcard::from_bytes(&blob).map_err(|e| self.bad("message", &e.to_string()))?;
                    if matches!(m.body, Body::Membership(_)) {
                        events.push((row.get::<_, Vec<u8>>(0).map_err(sql)?, row.get::<_, i64>(1).map_err(sql)?));
                    }
                }
            }
            let mut mark =
                self.conn.prepare("UPDATE messages SET event = 1 WHERE author = ?1 AND seq = ?2").map_err(sql)?;
            for (author, seq) in events {
                mark.execute(params![author, seq]).map_err(sql)?;
            }
            self.conn.execute_batch("PRAGMA user_version = 4").map_err(sql)
        };
        match migrate() {
            Ok(()) => self.conn.execute_batch("COMMIT").map_err(|e| self.sql(e)),
            Err(e) => {
                let _ = self.conn.execute_batch("ROLLBACK");
                Err(e)
            }
        }
    }

    fn get_meta<T: serde::de::DeserializeOwned>(&self, key: &str, what: &'static str) -> Result<Option<T>, StoreError> {
        let blob: Option<Vec<u8>> = self
            .conn
            .query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
            .optional()
            .map_err(|e| self.sql(e))?;
        blob.map(|b| {
            postcard::from_bytes(&b).map_err(|e| StoreError::BadRecord {
                path: self.path.clone(),
                what,
                detail: e.to_string(),
            })
        })
        .transpose()
    }

    /// The node's ed25519 secret key, made on first start (`None` before).
    pub fn identity(&self) -> Result<Option<[u8; 32]>, StoreError> {
        self.get_meta("identity", "identity")
    }

    /// Stores the identity unless one is there already (it never changes once made).
    pub fn init_identity(&self, secret: [u8; 32]) -> Result<[u8; 32], StoreError> {
        if let Some(existing) = self.identity()? {
            return Ok(existing);
        }
        let blob = postcard::to_allocvec(&secret).expect("a fixed-size array encodes");
        self.conn.execute("INSERT INTO meta (key, value) VALUES ('identity', ?1)", [blob]).map_err(|e| self.sql(e))?;
        Ok(secret)
    }

    /// The last membership snapshot (what `Node::new` needs after a restart).
    pub fn snapshot(&self) -> Result<Snapshot, StoreError> {
        Ok(self.get_meta("snapshot", "membership snapshot")?.unwrap_or_default())
    }

    /// The node's name and the configured name (`--name`, environment, config file or default) it was
    /// chosen under, as last written (`None` before the first start that wrote them).
    pub fn name(&self) -> Result<Option<(String, String)>, StoreError> {
        self.get_meta("name", "name")
    }

    /// The name to start under, given the configured one, written back: the stored name (the last `/nick`)
    /// while the configured name is the one it was chosen under; the configured name when that changed (a
    /// new `--name` is a rename) or on the first start.
    pub fn resolve_name(&self, configured: &str) -> Result<String, StoreError> {
        let name = match self.name()? {
            Some((name, under)) if under == configured => name,
            _ => configured.to_owned(),
        };
        let blob = postcard::to_allocvec(&(&name, configured)).expect("strings encode");
        self.conn
            .execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('name', ?1)", [blob])
            .map_err(|e| self.sql(e))?;
        Ok(name)
    }

    /// The membership events of the history, in canonical order (where the names come from).
    pub fn membership_events(&self) -> Result<Vec<Message>, StoreError> {
        let sql = "SELECT message FROM messages WHERE event = 1 ORDER BY lamport, author, seq";
        let mut q = self.conn.prepare_cached(sql).map_err(|e| self.sql(e))?;
        let rows = q.query_map([], |r| r.get::<_, Vec<u8>>(0)).map_err(|e| self.sql(e))?;
        let mut out = Vec::new();
        for blob in rows {
            let blob = blob.map_err(|e| self.sql(e))?;
            out.push(postcard::from_bytes(&blob).map_err(|e| self.bad("message", &e.to_string()))?);
        }
        Ok(out)
    }

    /// The last history summary, with what each peer acknowledged of our own messages.
    pub fn history_state(&self) -> Result<HistoryState, StoreError> {
        Ok(self.get_meta("history", "history summary")?.unwrap_or_default())
    }

    /// Commits `writes` in one transaction: all of them are durable when this returns, or none.
    pub fn commit(&mut self, writes: &[Write]) -> Result<(), StoreError> {
        let path = self.path.clone();
        let sql = |source| StoreError::Sql { path: path.clone(), source };
        let tx = self.conn.transaction().map_err(sql)?;
        // Summaries replace each other: only the last of each kind in the transaction is written.
        let mut snapshot = None;
        let mut summary = None;
        let mut name = None;
        {
            let mut insert = tx
                .prepare_cached(
                    "INSERT INTO messages (author, seq, lamport, message, event) VALUES (?1, ?2, ?3, ?4, ?5)",
                )
                .map_err(sql)?;
            for w in writes {
                match w {
                    Write::Snapshot(s) => snapshot = Some(s),
                    Write::Messages { messages, state } => {
                        for m in messages {
                            let blob = postcard::to_allocvec(m).expect("a message encodes");
                            let event = matches!(m.body, Body::Membership(_));
                            insert
                                .execute(params![&m.author.0[..], to_i64(m.seq), to_i64(m.lamport), blob, event])
                                .map_err(sql)?;
                        }
                        summary = Some(state);
                    }
                    Write::Name { name: n, configured } => name = Some((n, configured)),
                }
            }
            let mut meta =
                tx.prepare_cached("INSERT OR REPLACE INTO meta (key, value) VALUES (?1, ?2)").map_err(sql)?;
            if let Some(s) = snapshot {
                let blob = postcard::to_allocvec(s).expect("a snapshot encodes");
                meta.execute(params!["snapshot", blob]).map_err(sql)?;
            }
            if let Some(state) = summary {
                let blob = postcard::to_allocvec(state).expect("a history summary encodes");
                meta.execute(params!["history", blob]).map_err(sql)?;
            }
            if let Some(n) = name {
                let blob = postcard::to_allocvec(&n).expect("strings encode");
                meta.execute(params!["name", blob]).map_err(sql)?;
            }
        }
        tx.commit().map_err(sql)
    }

    /// Answers `Output::Load`: the messages a peer with `req.frontier` lacks, in canonical order after
    /// `req.after`, within the count and byte budgets (bytes of encoded messages); and whether more remain.
    /// Two phases in one read transaction (one snapshot, and one lock instead of one per query): the
    /// candidates' keys and sizes first (cheap), then the bodies of the chosen page, one range of
    /// consecutive seqs per author (an author's candidates are consecutive seqs, and a page takes a prefix of
    /// them, because its lamport grows with its seq).
    pub fn load(&self, req: &LoadRequest) -> Result<(Vec<Message>, bool), StoreError> {
        let limit = req.max_messages.max(1) as usize;
        let (after_lamport, after_author, after_seq) = match req.after {
            Some(OrderKey { lamport, author, seq }) => (to_i64(lamport), author.0.to_vec(), to_i64(seq)),
            None => (-1, Vec::new(), -1),
        };
        let tx = self.conn.unchecked_transaction().map_err(|e| self.sql(e))?;
        let mut keys = tx
            .prepare_cached(
                "SELECT lamport, seq, length(message) FROM messages WHERE author = ?1 AND seq > ?2
                 AND (lamport, author, seq) > (?3, ?4, ?5) ORDER BY seq LIMIT ?6",
            )
            .map_err(|e| self.sql(e))?;
        let mut candidates: Vec<(OrderKey, usize)> = Vec::new();
        for author in self.history_state()?.authors.keys() {
            let held = req.frontier.get(author).copied().unwrap_or(0);
            let params =
                params![&author.0[..], to_i64(held), after_lamport, after_author, after_seq, (limit + 1) as i64];
            let rows = keys
                .query_map(params, |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?, r.get::<_, i64>(2)?)))
                .map_err(|e| self.sql(e))?;
            for row in rows {
                let (lamport, seq, len) = row.map_err(|e| self.sql(e))?;
                candidates.push((OrderKey { lamport: lamport as u64, author: *author, seq: seq as u64 }, len as usize));
            }
        }
        candidates.sort_unstable_by_key(|(k, _)| *k);
        let chosen = chatmesh_core::history::page_of(&candidates, limit, req.max_bytes as usize);
        let more = candidates.len() > chosen;
        // Per author: the first seq chosen and how many.
        let mut ranges: std::collections::BTreeMap<NodeKey, (u64, usize)> = std::collections::BTreeMap::new();
        for (key, _) in &candidates[..chosen] {
            ranges.entry(key.author).or_insert((key.seq, 0)).1 += 1;
        }
        let mut range = tx
            .prepare_cached("SELECT seq, message FROM messages WHERE author = ?1 AND seq >= ?2 ORDER BY seq LIMIT ?3")
            .map_err(|e| self.sql(e))?;
        let mut bodies: std::collections::BTreeMap<NodeKey, std::vec::IntoIter<Message>> =
            std::collections::BTreeMap::new();
        for (author, (first, count)) in ranges {
            let rows = range
                .query_map(params![&author.0[..], to_i64(first), count as i64], |r| {
                    Ok((r.get::<_, i64>(0)?, r.get::<_, Vec<u8>>(1)?))
                })
                .map_err(|e| self.sql(e))?;
            let mut messages = Vec::with_capacity(count);
            for (expected, row) in (first..).zip(rows) {
                let (seq, blob) = row.map_err(|e| self.sql(e))?;
                let message: Message = postcard::from_bytes(&blob).map_err(|e| self.bad("message", &e.to_string()))?;
                if seq as u64 != expected || message.seq != expected || message.author != author {
                    return Err(self.bad("message", &format!("{author}/{expected} is not where it belongs")));
                }
                messages.push(message);
            }
            if messages.len() != count {
                return Err(self.bad("message", &format!("{author} lacks seqs from {first}")));
            }
            bodies.insert(author, messages.into_iter());
        }
        // Back into canonical order.
        let mut page = Vec::with_capacity(chosen);
        for (key, _) in &candidates[..chosen] {
            page.extend(bodies.get_mut(&key.author).and_then(Iterator::next));
        }
        Ok((page, more))
    }

    /// The whole history in canonical order, or its last `limit` messages.
    pub fn history(&self, limit: Option<usize>) -> Result<Vec<Message>, StoreError> {
        let sql = "SELECT message FROM (SELECT message, lamport, author, seq FROM messages
                   ORDER BY lamport DESC, author DESC, seq DESC LIMIT ?1) ORDER BY lamport, author, seq";
        let mut q = self.conn.prepare_cached(sql).map_err(|e| self.sql(e))?;
        let limit = limit.map_or(-1, |l| l as i64);
        let rows = q.query_map([limit], |r| r.get::<_, Vec<u8>>(0)).map_err(|e| self.sql(e))?;
        let mut out = Vec::new();
        for blob in rows {
            let blob = blob.map_err(|e| self.sql(e))?;
            out.push(postcard::from_bytes(&blob).map_err(|e| self.bad("message", &e.to_string()))?);
        }
        Ok(out)
    }

    /// The durability settings in force on this connection: `(journal_mode, synchronous)`.
    pub fn durability(&self) -> Result<(String, i64), StoreError> {
        let mode: String = self.conn.query_row("PRAGMA journal_mode", [], |r| r.get(0)).map_err(|e| self.sql(e))?;
        let sync: i64 = self.conn.query_row("PRAGMA synchronous", [], |r| r.get(0)).map_err(|e| self.sql(e))?;
        Ok((mode, sync))
    }

    pub fn message_count(&self) -> Result<u64, StoreError> {
        let n: i64 = self.conn.query_row("SELECT count(*) FROM messages", [], |r| r.get(0)).map_err(|e| self.sql(e))?;
        Ok(n as u64)
    }

    fn bad(&self, what: &'static str, detail: &str) -> StoreError {
        StoreError::BadRecord { path: self.path.clone(), what, detail: detail.to_owned() }
    }
}

/// Seq and lamport are at most `u64::MAX / 4` (the core refuses larger), so they fit SQLite's integers.
fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

#[cfg(unix)]
fn restrict_permissions(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    // The database holds the node's secret key: readable by its owner only.
    if let Err(e) = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)) {
        tracing::warn!(path = %path.display(), "cannot restrict the database to its owner: {e}");
    }
}

#[cfg(not(unix))]
fn restrict_permissions(_: &Path) {}
