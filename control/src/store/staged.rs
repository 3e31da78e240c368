//! State-machine changes held in memory between redb commits: applies land in layers here,
//! reads look in the layers before the redb file, and a flush writes the layers out in one
//! redb transaction.
//!
//! Why: a redb commit per apply was a third of every server's apply and wrote pages for each
//! write (an SD card wears). The state machine need not reach redb per apply: the raft log
//! holds every applied entry durably, and after a crash raft applies again from the
//! `last_applied` that the last durable flush recorded (etcd's backend batches its commits
//! the same way).
//!
//! Invariants:
//! - The layers hold, oldest first, every change applied since the last flush. A flush writes
//!   the layers present when it began, in one redb transaction, and only after its commit
//!   drops those layers. A reader takes its redb read transaction and the layers together
//!   (under the `layers` lock), so it sees every applied change: once, or twice with the same
//!   value when its transaction began after a flush committed but before the layers were
//!   dropped.
//! - Only `flush` and `replace` write the staged tables in redb, and never at the same time
//!   (`flushing`).

use super::StoreError;
use redb::{Database, Durability, ReadOnlyTable, ReadTransaction, TableDefinition, TableHandle};
use std::cell::OnceCell;
use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

/// A table that goes through the layers: string keys, byte values.
pub type Def = TableDefinition<'static, &'static str, &'static [u8]>;

type StoredTable = ReadOnlyTable<&'static str, &'static [u8]>;

/// One table's changes: a value written, or `None` for a row removed.
type Rows = BTreeMap<String, Option<Vec<u8>>>;

/// The changes of one or more applies, per table.
#[derive(Default)]
pub struct Layer {
    tables: Vec<(Def, Rows)>,
    bytes: usize,
}

impl Layer {
    fn rows(&self, def: Def) -> Option<&Rows> {
        self.tables
            .iter()
            .find(|(d, _)| d.name() == def.name())
            .map(|(_, rows)| rows)
    }

    fn rows_mut(&mut self, def: Def) -> &mut Rows {
        let at = match self.tables.iter().position(|(d, _)| d.name() == def.name()) {
            Some(at) => at,
            None => {
                self.tables.push((def, Rows::new()));
                self.tables.len() - 1
            }
        };
        &mut self.tables[at].1
    }

    /// This layer's change to `key`: `Some(None)` for a removal, `None` when it has none.
    fn get(&self, def: Def, key: &str) -> Option<Option<&[u8]>> {
        let value = self.rows(def)?.get(key)?;
        Some(value.as_deref())
    }

    fn set(&mut self, def: Def, key: &str, value: Option<Vec<u8>>) {
        self.bytes += key.len() + value.as_ref().map_or(0, Vec::len);
        self.rows_mut(def).insert(key.to_string(), value);
    }

    fn is_empty(&self) -> bool {
        self.tables.iter().all(|(_, rows)| rows.is_empty())
    }

    /// Takes in the changes of a later layer (later values win).
    fn absorb(&mut self, newer: Layer) {
        self.bytes += newer.bytes;
        for (def, rows) in newer.tables {
            self.rows_mut(def).extend(rows);
        }
    }
}

/// The staged state machine: the redb file and the applied changes not yet written to it.
#[derive(Clone)]
pub struct Staged {
    db: Arc<Database>,
    layers: Arc<Mutex<Vec<Arc<Layer>>>>,
    flushing: Arc<Mutex<()>>,
    /// Bytes held in the layers, to flush early when applies bring in a lot.
    held: Arc<AtomicUsize>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Staged {
    pub fn new(db: Arc<Database>) -> Staged {
        Staged {
            db,
            layers: Arc::default(),
            flushing: Arc::default(),
            held: Arc::default(),
        }
    }

    /// The redb file, for what does not go through the layers (raft's own bookkeeping).
    pub fn database(&self) -> &Arc<Database> {
        &self.db
    }

    /// A consistent view of `tables` as of every change applied so far.
    pub fn view(&self, tables: &[Def]) -> Result<View, StoreError> {
        let (txn, layers) = {
            let layers = lock(&self.layers);
            (self.db.begin_read()?, layers.clone())
        };
        Ok(View {
            txn,
            tables: tables.iter().map(|def| (*def, OnceCell::new())).collect(),
            layers,
        })
    }

    /// Starts the changes of one apply, reading `tables` as of every change applied so far.
    pub fn stage(&self, tables: &[Def]) -> Result<Stage, StoreError> {
        Ok(Stage {
            below: self.view(tables)?,
            layer: Layer::default(),
        })
    }

    /// Makes a stage's changes part of the state machine, visible to every later view.
    pub fn commit(&self, stage: Stage) {
        let layer = stage.layer;
        if layer.is_empty() {
            return;
        }
        self.held.fetch_add(layer.bytes, Ordering::Relaxed);
        let mut layers = lock(&self.layers);
        // A layer nobody reads (no view, no flush holds it) can take the new changes in, so
        // reads search few layers; one that is held must stay as it is.
        match layers.last_mut().and_then(Arc::get_mut) {
            Some(last) => last.absorb(layer),
            None => layers.push(Arc::new(layer)),
        }
    }

    /// Bytes of changes not yet written to redb.
    pub fn held_bytes(&self) -> usize {
        self.held.load(Ordering::Relaxed)
    }

    /// Writes every layer to redb in one transaction (fsynced when `durable`) and drops them.
    pub fn flush(&self, durable: bool) -> Result<(), StoreError> {
        let _flushing = lock(&self.flushing);
        let layers = lock(&self.layers).clone();
        let mut txn = self.db.begin_write()?;
        txn.set_durability(if durable {
            Durability::Immediate
        } else {
            Durability::None
        });
        write_layers(&txn, &layers)?;
        txn.commit()?;
        let flushed: usize = layers.iter().map(|l| l.bytes).sum();
        // Dropped from the list while still held here: a layer nobody else holds may take in
        // new changes (`commit`), and those must not go with it.
        lock(&self.layers).drain(..layers.len());
        self.held.fetch_sub(flushed, Ordering::Relaxed);
        Ok(())
    }

    /// Replaces the state machine (a snapshot install): drops the layers and runs `write`, a
    /// durable redb transaction, while no reader can start, so none sees the old layers over
    /// the new tables or the old tables without their layers.
    pub fn replace<R, E>(&self, write: impl FnOnce(&Database) -> Result<R, E>) -> Result<R, E> {
        let _flushing = lock(&self.flushing);
        let mut layers = lock(&self.layers);
        let out = write(&self.db)?;
        layers.clear();
        self.held.store(0, Ordering::Relaxed);
        Ok(out)
    }
}

fn write_layers(txn: &redb::WriteTransaction, layers: &[Arc<Layer>]) -> Result<(), StoreError> {
    for layer in layers {
        for (def, rows) in &layer.tables {
            let mut table = txn.open_table(*def)?;
            for (key, value) in rows {
                match value {
                    Some(v) => {
                        table.insert(key.as_str(), v.as_slice())?;
                    }
                    None => {
                        table.remove(key.as_str())?;
                    }
                }
            }
        }
    }
    Ok(())
}

/// A consistent read-only view: a redb read transaction and the layers applied after it.
pub struct View {
    txn: ReadTransaction,
    /// The tables this view reads, each opened at its first read (`None`: it does not exist).
    tables: Vec<(Def, OnceCell<Option<StoredTable>>)>,
    layers: Vec<Arc<Layer>>,
}

/// Reading one row of the state machine as applied so far, through a view or an apply's stage.
pub trait ReadRow {
    /// Calls `f` with the value at `key` in `def` (which the view must have been opened with).
    fn read<R>(
        &self,
        def: Def,
        key: &str,
        f: impl FnOnce(Option<&[u8]>) -> R,
    ) -> Result<R, StoreError>;
}

impl ReadRow for View {
    fn read<R>(
        &self,
        def: Def,
        key: &str,
        f: impl FnOnce(Option<&[u8]>) -> R,
    ) -> Result<R, StoreError> {
        if let Some(value) = self.layers.iter().rev().find_map(|l| l.get(def, key)) {
            return Ok(f(value));
        }
        match self.table(def)? {
            Some(table) => match table.get(key)? {
                Some(v) => Ok(f(Some(v.value()))),
                None => Ok(f(None)),
            },
            None => Ok(f(None)),
        }
    }
}

impl View {
    /// Calls `f` with every row of `def` whose key starts with `prefix`, in key order, until
    /// `f` returns an error.
    pub fn scan_prefix(
        &self,
        def: Def,
        prefix: &str,
        mut f: impl FnMut(&str, &[u8]) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        // The layers' rows under the prefix, newest value per key.
        let mut staged: BTreeMap<&str, Option<&[u8]>> = BTreeMap::new();
        for layer in &self.layers {
            if let Some(rows) = layer.rows(def) {
                let range = rows.range::<str, _>((Bound::Included(prefix), Bound::Unbounded));
                for (k, v) in range.take_while(|(k, _)| k.starts_with(prefix)) {
                    staged.insert(k.as_str(), v.as_deref());
                }
            }
        }
        let mut staged = staged.into_iter().peekable();
        if let Some(table) = self.table(def)? {
            for item in table.range(prefix..)? {
                let (k, v) = item?;
                let key = k.value();
                if !key.starts_with(prefix) {
                    break;
                }
                while let Some((sk, sv)) = staged.next_if(|(sk, _)| *sk < key) {
                    if let Some(sv) = sv {
                        f(sk, sv)?;
                    }
                }
                match staged.next_if(|(sk, _)| *sk == key) {
                    Some((_, Some(sv))) => f(key, sv)?,
                    Some((_, None)) => {}
                    None => f(key, v.value())?,
                }
            }
        }
        for (sk, sv) in staged {
            if let Some(sv) = sv {
                f(sk, sv)?;
            }
        }
        Ok(())
    }

    fn table(&self, def: Def) -> Result<Option<&StoredTable>, StoreError> {
        let Some((_, cell)) = self.tables.iter().find(|(d, _)| d.name() == def.name()) else {
            return Err(StoreError::Storage(format!(
                "table {} read through a view not opened with it",
                def.name()
            )));
        };
        if let Some(table) = cell.get() {
            return Ok(table.as_ref());
        }
        let table = match self.txn.open_table(def) {
            Ok(t) => Some(t),
            Err(redb::TableError::TableDoesNotExist(_)) => None,
            Err(e) => return Err(e.into()),
        };
        Ok(cell.get_or_init(|| table).as_ref())
    }
}

/// The changes of one apply in the making: reads see them over everything applied before.
pub struct Stage {
    below: View,
    layer: Layer,
}

impl ReadRow for Stage {
    fn read<R>(
        &self,
        def: Def,
        key: &str,
        f: impl FnOnce(Option<&[u8]>) -> R,
    ) -> Result<R, StoreError> {
        match self.layer.get(def, key) {
            Some(value) => Ok(f(value)),
            None => self.below.read(def, key, f),
        }
    }
}

impl Stage {
    pub fn insert(&mut self, def: Def, key: &str, value: Vec<u8>) {
        self.layer.set(def, key, Some(value));
    }

    pub fn remove(&mut self, def: Def, key: &str) {
        self.layer.set(def, key, None);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Def = TableDefinition::new("sm.test");

    fn state_with(rows: &[(&str, &str)]) -> (tempfile::TempDir, Staged) {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::create(dir.path().join("s.redb")).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let mut t = txn.open_table(T).unwrap();
            for (k, v) in rows {
                t.insert(*k, v.as_bytes()).unwrap();
            }
        }
        txn.commit().unwrap();
        (dir, Staged::new(Arc::new(db)))
    }

    fn change(state: &Staged, puts: &[(&str, &str)], removes: &[&str]) {
        let mut stage = state.stage(&[T]).unwrap();
        for (k, v) in puts {
            stage.insert(T, k, v.as_bytes().to_vec());
        }
        for k in removes {
            stage.remove(T, k);
        }
        state.commit(stage);
    }

    fn get(view: &View, key: &str) -> Option<String> {
        view.read(T, key, |v| {
            v.map(|b| String::from_utf8_lossy(b).into_owned())
        })
        .unwrap()
    }

    fn scan(view: &View, prefix: &str) -> Vec<(String, String)> {
        let mut out = Vec::new();
        view.scan_prefix(T, prefix, |k, v| {
            out.push((k.to_string(), String::from_utf8_lossy(v).into_owned()));
            Ok(())
        })
        .unwrap();
        out
    }

    fn pairs(rows: &[(&str, &str)]) -> Vec<(String, String)> {
        rows.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn reads_and_scans_see_applied_changes_over_the_file_the_same_before_and_after_a_flush() {
        let (_d, state) = state_with(&[
            ("a/1", "old"),
            ("a/2", "gone"),
            ("a/4", "kept"),
            ("b/1", "b"),
        ]);
        change(&state, &[("a/1", "new"), ("a/3", "added")], &["a/2"]);
        change(
            &state,
            &[("a/0", "first"), ("a/5", "last"), ("c/1", "c")],
            &[],
        );
        let want = pairs(&[
            ("a/0", "first"),
            ("a/1", "new"),
            ("a/3", "added"),
            ("a/4", "kept"),
            ("a/5", "last"),
        ]);
        for flushed in [false, true] {
            if flushed {
                state.flush(false).unwrap();
                assert_eq!(state.held_bytes(), 0);
            }
            let view = state.view(&[T]).unwrap();
            assert_eq!(scan(&view, "a/"), want, "flushed: {flushed}");
            assert_eq!(get(&view, "a/1").as_deref(), Some("new"));
            assert_eq!(get(&view, "a/2"), None);
            assert_eq!(get(&view, "b/1").as_deref(), Some("b"));
            assert_eq!(scan(&view, "c/"), pairs(&[("c/1", "c")]));
        }
    }

    #[test]
    fn a_view_keeps_its_version_through_later_changes_and_flushes() {
        let (_d, state) = state_with(&[("k", "0")]);
        change(&state, &[("k", "1")], &[]);
        let before = state.view(&[T]).unwrap();
        // The layer `before` holds must not take this change in.
        change(&state, &[("k", "2"), ("n", "new")], &[]);
        state.flush(false).unwrap();
        change(&state, &[("k", "3")], &[]);
        assert_eq!(get(&before, "k").as_deref(), Some("1"));
        assert_eq!(get(&before, "n"), None);
        let now = state.view(&[T]).unwrap();
        assert_eq!(get(&now, "k").as_deref(), Some("3"));
        assert_eq!(get(&now, "n").as_deref(), Some("new"));
    }

    #[test]
    fn a_flush_writes_every_change_to_the_file_once_and_replace_drops_what_is_held() {
        let (dir, state) = state_with(&[]);
        change(&state, &[("x", "1")], &[]);
        let held = state.view(&[T]).unwrap();
        change(&state, &[("y", "2")], &[]);
        state.flush(true).unwrap();
        drop(held);
        change(&state, &[("z", "3")], &[]);
        // What a restart would find: the file alone.
        let in_file = |state: &Staged| {
            let txn = state.database().begin_read().unwrap();
            let t = txn.open_table(T).unwrap();
            let mut keys = Vec::new();
            for item in redb::ReadableTable::iter(&t).unwrap() {
                keys.push(item.unwrap().0.value().to_string());
            }
            keys
        };
        assert_eq!(in_file(&state), ["x", "y"]);
        state
            .replace(|db| {
                let txn = db.begin_write()?;
                txn.delete_table(T)?;
                txn.commit()?;
                Ok::<_, StoreError>(())
            })
            .unwrap();
        assert_eq!(state.held_bytes(), 0);
        assert_eq!(get(&state.view(&[T]).unwrap(), "z"), None);
        drop(dir);
    }

    #[test]
    fn reading_a_table_the_view_was_not_opened_with_is_an_error_not_a_panic() {
        let (_d, state) = state_with(&[]);
        let view = state.view(&[]).unwrap();
        assert!(view.read(T, "k", |v| v.is_some()).is_err());
    }
}
