//! The highly available control plane with the real binaries: three servers on loopback (the
//! second and third join the first with its token, at the same time), a steady stream of
//! writes and reads from several clients while the leader is SIGKILLed three times and
//! restarted, a follower cut off long enough to need a snapshot and then healed (through
//! fault-injecting UDP relays in front of each server), and all three killed and restarted at
//! once. Afterwards every acknowledged write is on every server, the recorded register history
//! is linearizable, and `edgectl member` lists and removes servers.

mod checker;
mod relay;

use crate::support::*;
use checker::{linearizable, Event, Op};
use edge_api::config::{connect_first, ClientConfigFile};
use edge_api::wire::{Client, ErrorCode, MemberRole, Request, Response, WireError, ALPN_API};
use edge_api::{ConfigMap, Kind, Object, ObjectKey};
use relay::Relay;
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Snapshot (and compact the log) this often, so that the test sees compaction happen.
const SNAPSHOT_EVERY: u64 = 200;
const REGISTERS: usize = 3;
const WRITERS: usize = 4;
/// A client gives up on one request after this long (the server waits up to 10 s for a leader).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(12);

struct Server {
    listen: SocketAddr,
    relay: Relay,
    data: PathBuf,
    daemon: Option<Daemon>,
    starts: u32,
}

struct Ha {
    home: tempfile::TempDir,
    servers: Vec<Server>,
    token: String,
    rt: tokio::runtime::Runtime,
}

impl Ha {
    fn new(n: usize) -> Ha {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let home = tempfile::tempdir().expect("tempdir");
        let servers = (0..n)
            .map(|i| {
                let listen: SocketAddr =
                    format!("127.0.0.1:{}", free_port()).parse().expect("addr");
                Server {
                    listen,
                    relay: rt.block_on(Relay::start(listen)),
                    data: home.path().join(format!("s{}", i + 1)),
                    daemon: None,
                    starts: 0,
                }
            })
            .collect();
        Ha {
            home,
            servers,
            token: String::new(),
            rt,
        }
    }

    fn spawn(&mut self, i: usize) {
        let first = self.servers[0].listen.to_string();
        let s = &mut self.servers[i];
        s.starts += 1;
        let (data, listen, advertise) = (
            s.data.to_str().expect("utf8").to_string(),
            s.listen.to_string(),
            s.relay.addr.to_string(),
        );
        let snapshot = SNAPSHOT_EVERY.to_string();
        let mut args = vec![
            "server",
            "--data-dir",
            &data,
            "--listen",
            &listen,
            "--advertise",
            &advertise,
            "--no-agent",
            "--raft-snapshot-logs",
            &snapshot,
        ];
        // Joiners keep the flags on restarts, as a service unit would: they are ignored then.
        if i > 0 {
            args.extend(["--join", first.as_str(), "--token", self.token.as_str()]);
        }
        let log = format!("s{}-{}.log", i + 1, s.starts);
        s.daemon = Some(Daemon::spawn(&args, self.home.path(), &log));
    }

    fn admin(&self) -> ClientConfigFile {
        ClientConfigFile::load(&self.servers[0].data.join("admin.conf")).expect("admin.conf")
    }

    fn addresses(&self) -> Vec<String> {
        self.servers.iter().map(|s| s.listen.to_string()).collect()
    }

    fn index_of_advertised(&self, addr: &str) -> Option<usize> {
        self.servers
            .iter()
            .position(|s| s.relay.addr.to_string() == addr)
    }

    /// Sends one request to server `i` (its listen address, not through the relay).
    fn call(&self, i: usize, req: Request) -> Result<Response, WireError> {
        let quic = self.admin().quic_config(ALPN_API).expect("tls");
        let addr = self.servers[i].listen.to_string();
        self.rt.block_on(async move {
            let client = Client::connect(&addr, quic).await?;
            tokio::time::timeout(REQUEST_TIMEOUT, client.call(&req))
                .await
                .unwrap_or(Err(WireError::NoResponse))
        })
    }

    fn members(&self, i: usize) -> Option<Vec<edge_api::wire::Member>> {
        match self.call(i, Request::Members) {
            Ok(Response::Members { members }) => Some(members),
            _ => None,
        }
    }

    /// Waits until server `asking` sees `n` reachable voters, one of them leader, all having
    /// applied at least `applied`; returns the leader's index.
    fn wait_healthy(&self, asking: usize, n: usize, applied: u64) -> usize {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(leader) = self.healthy(asking, n, applied) {
                return leader;
            }
            if std::time::Instant::now() > deadline {
                let logs: Vec<String> = (0..3)
                    .map(|i| {
                        let log = self.log(i);
                        let tail: Vec<&str> = log.lines().rev().take(40).collect();
                        let tail: Vec<&str> = tail.into_iter().rev().collect();
                        format!("--- server {} (last lines):\n{}", i + 1, tail.join("\n"))
                    })
                    .collect();
                panic!(
                    "no healthy control plane after 60 s; server {} sees {:?}\n{}",
                    asking + 1,
                    self.members(asking),
                    logs.join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The leader's index if server `asking` sees `n` reachable voters, one of them leader, all
    /// having applied at least `applied`.
    fn healthy(&self, asking: usize, n: usize, applied: u64) -> Option<usize> {
        let ms = self.members(asking)?;
        let voters = ms
            .iter()
            .filter(|m| m.role != MemberRole::Learner && m.reachable);
        let leader = ms
            .iter()
            .find(|m| m.role == MemberRole::Leader && m.reachable)?;
        let caught_up = ms.iter().all(|m| m.applied_index.unwrap_or(0) >= applied);
        (voters.count() == n && ms.len() == n && caught_up)
            .then(|| self.index_of_advertised(&leader.address))
            .flatten()
    }

    fn kill(&mut self, i: usize) {
        if let Some(mut d) = self.servers[i].daemon.take() {
            let _ = d.child.kill();
            let _ = d.child.wait();
        }
    }

    fn log(&self, i: usize) -> String {
        let s = &self.servers[i];
        (1..=s.starts)
            .map(|n| {
                std::fs::read_to_string(self.home.path().join(format!("s{}-{n}.log", i + 1)))
                    .unwrap_or_default()
            })
            .collect()
    }

    fn edgectl(&self, args: &[&str]) -> std::process::Output {
        let config = self.servers[0].data.join("admin.conf");
        std::process::Command::new(EDGECTL)
            .args(args)
            .env("EDGECONFIG", &config)
            .env("HOME", self.home.path())
            .output()
            .expect("run edgectl")
    }

    /// The names of the `u-*` ConfigMaps as server `i` has them, and the registers' values.
    fn state_of(&self, i: usize) -> (BTreeSet<String>, BTreeMap<String, String>) {
        let req = Request::List {
            kind: Kind::ConfigMap,
            namespace: Some("default".into()),
            selector: None,
        };
        let Ok(Response::List { items, .. }) = self.call(i, req) else {
            panic!("server {} could not list:\n{}", i + 1, self.log(i));
        };
        let mut names = BTreeSet::new();
        let mut registers = BTreeMap::new();
        for o in items {
            let Object::ConfigMap(cm) = o else { continue };
            let name = cm.metadata.name.clone();
            if name.starts_with("u-") {
                names.insert(name);
            } else if name.starts_with("reg-") {
                registers.insert(name, cm.data.get("v").cloned().unwrap_or_default());
            }
        }
        (names, registers)
    }
}

fn configmap(name: &str, value: &str) -> Object {
    let mut cm = ConfigMap::default();
    cm.metadata.name = name.to_string();
    cm.data.insert("v".into(), value.to_string());
    Object::ConfigMap(cm)
}

/// What the writers recorded.
#[derive(Default)]
struct Record {
    /// Register operations, by key.
    registers: BTreeMap<String, Vec<Event>>,
    /// `u-*` objects whose creation was acknowledged.
    created: BTreeSet<String>,
    /// Calls that failed or timed out (the client then moved to another server).
    failures: usize,
}

/// One client: a connection to some server, moved to the next on any failure; it writes and
/// reads registers and creates unique objects, recording when each call started and ended.
async fn writer(
    id: usize,
    servers: Vec<String>,
    config: ClientConfigFile,
    epoch: Instant,
    stop: Arc<AtomicBool>,
    record: Arc<Mutex<Record>>,
) {
    let quic = config.quic_config(ALPN_API).expect("tls");
    let mut client: Option<Client> = None;
    let mut start = id;
    let now = || epoch.elapsed().as_micros() as u64;
    let mut n = 0u64;
    while !stop.load(Ordering::SeqCst) {
        n += 1;
        let c = match &client {
            Some(c) => c.clone(),
            None => {
                let order = edge_api::config::dial_order("", &servers, start);
                match connect_first(&order, quic.clone()).await {
                    Ok((c, _)) => {
                        client = Some(c.clone());
                        c
                    }
                    Err(_) => {
                        start += 1;
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        continue;
                    }
                }
            }
        };
        let key = format!("reg-{}", n as usize % REGISTERS);
        let (request, op) = match n % 10 {
            0..=3 => {
                let v = format!("w{id}-{n}");
                let req = Request::Apply {
                    object: configmap(&key, &v),
                    dry_run: false,
                };
                (req, Some(Op::Write(v)))
            }
            4..=6 => {
                let req = Request::Get {
                    key: ObjectKey::new(Kind::ConfigMap, "default", &key),
                };
                (req, Some(Op::Read(None)))
            }
            _ => {
                let req = Request::Create {
                    object: configmap(&format!("u-{id}-{n}"), "x"),
                };
                (req, None)
            }
        };
        let call = now();
        let answer = tokio::time::timeout(REQUEST_TIMEOUT, c.call(&request)).await;
        let ret = now();
        let answer = answer.unwrap_or(Err(WireError::NoResponse));
        let not_found = matches!(&answer, Err(WireError::Api(e)) if e.code == ErrorCode::NotFound);
        let failed = answer.is_err() && !not_found;
        record_outcome(&record, key, op, call, ret, answer);
        if failed {
            // Whatever went wrong, try another server next.
            client = None;
            start += 1;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

fn record_outcome(
    record: &Mutex<Record>,
    key: String,
    op: Option<Op>,
    call: u64,
    ret: u64,
    answer: Result<Response, WireError>,
) {
    let mut rec = record.lock().unwrap_or_else(|p| p.into_inner());
    if matches!(&answer, Err(e) if e.api().is_none_or(|a| a.code != ErrorCode::NotFound)) {
        rec.failures += 1;
    }
    let event = |ret, op| Event { call, ret, op };
    match (op, answer) {
        (Some(Op::Write(v)), Ok(_)) => rec
            .registers
            .entry(key)
            .or_default()
            .push(event(Some(ret), Op::Write(v))),
        // Unknown outcome: it may have been applied, now or later.
        (Some(Op::Write(v)), Err(_)) => rec
            .registers
            .entry(key)
            .or_default()
            .push(event(None, Op::Write(v))),
        (Some(Op::Read(_)), Ok(Response::Object(Object::ConfigMap(cm)))) => {
            let seen = cm.data.get("v").cloned();
            rec.registers
                .entry(key)
                .or_default()
                .push(event(Some(ret), Op::Read(seen)))
        }
        (Some(Op::Read(_)), Err(WireError::Api(e))) if e.code == ErrorCode::NotFound => rec
            .registers
            .entry(key)
            .or_default()
            .push(event(Some(ret), Op::Read(None))),
        (None, Ok(Response::Object(o))) => {
            rec.created.insert(o.meta().name.clone());
        }
        // A failed read had no effect; a failed create is simply not counted as acknowledged.
        _ => {}
    }
}

#[test]
fn three_servers_keep_every_acknowledged_write_through_kills_and_partitions() {
    let started = Instant::now();
    let mut ha = Ha::new(3);
    ha.spawn(0);
    let token_file = ha.servers[0].data.join("token");
    ha.token = wait_for("the first server's token", Duration::from_secs(60), || {
        let t = std::fs::read_to_string(&token_file).ok()?;
        // The server writes its token before the admin config: wait for both.
        if !ha.servers[0].data.join("admin.conf").exists() {
            return None;
        }
        ha.members(0).map(|_| t.trim().to_string())
    });
    // Both join at once: their node ids must still differ.
    ha.spawn(1);
    ha.spawn(2);
    ha.wait_healthy(0, 3, 0);
    let table = stdout(&ha.edgectl(&["member", "list"]));
    assert_eq!(table.lines().count(), 4, "{table}");
    assert_eq!(table.matches("leader").count(), 1, "{table}");
    assert_eq!(table.matches("follower").count(), 2, "{table}");
    let ids: BTreeSet<&str> = table
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert_eq!(ids.len(), 3, "distinct ids: {table}");
    wait_for(
        "admin.conf to list every server",
        Duration::from_secs(20),
        || (ha.admin().servers.len() == 3).then_some(()),
    );

    let epoch = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let record = Arc::new(Mutex::new(Record::default()));
    let writers: Vec<_> = (0..WRITERS)
        .map(|id| {
            ha.rt.spawn(writer(
                id,
                ha.addresses(),
                ha.admin(),
                epoch,
                stop.clone(),
                record.clone(),
            ))
        })
        .collect();

    // Kill the leader three times, each time restarting it and waiting for it to catch up.
    for round in 0..3 {
        std::thread::sleep(Duration::from_secs(2));
        let leader = ha.wait_healthy((round + 1) % 3, 3, 0);
        ha.kill(leader);
        std::thread::sleep(Duration::from_millis(1500));
        ha.spawn(leader);
        ha.wait_healthy((leader + 1) % 3, 3, 0);
    }

    eprintln!("three leader kills done after {:?}", started.elapsed());
    // Cut a follower off until the leader's log has moved on past a snapshot, then heal.
    let leader = ha.wait_healthy(0, 3, 0);
    let cut = (leader + 1) % 3;
    let before = ha.members(leader).expect("members");
    let cut_index = before[..]
        .iter()
        .find(|m| ha.index_of_advertised(&m.address) == Some(cut))
        .and_then(|m| m.last_log_index)
        .unwrap_or(0);
    ha.servers[cut].relay.faults.set_down(true);
    for (j, s) in ha.servers.iter().enumerate() {
        if j != cut {
            s.relay.faults.set_blocked(ha.servers[cut].listen, true);
        }
    }
    wait_for(
        "the log to move on without the follower",
        Duration::from_secs(60),
        || {
            let ms = ha.members(leader)?;
            let last = ms
                .iter()
                .find(|m| m.role == MemberRole::Leader)?
                .last_log_index?;
            (last > cut_index + 2 * SNAPSHOT_EVERY).then_some(())
        },
    );
    ha.servers[cut].relay.faults.set_down(false);
    for s in &ha.servers {
        s.relay.faults.set_blocked(ha.servers[cut].listen, false);
    }
    eprintln!("partition healed after {:?}", started.elapsed());
    std::thread::sleep(Duration::from_secs(2));

    stop.store(true, Ordering::SeqCst);
    for w in writers {
        ha.rt.block_on(w).expect("writer");
    }
    let record = std::mem::take(&mut *record.lock().unwrap_or_else(|p| p.into_inner()));
    let last_applied = ha
        .members(0)
        .and_then(|ms| ms.iter().filter_map(|m| m.last_log_index).max())
        .unwrap_or(0);
    ha.wait_healthy(0, 3, last_applied);
    assert!(
        ha.log(cut).contains("installed a snapshot"),
        "the cut-off follower caught up from a snapshot:\n{}",
        ha.log(cut)
    );
    for i in 0..3 {
        assert!(
            ha.log(i).contains("compacted the raft log"),
            "server {} compacts its log:\n{}",
            i + 1,
            ha.log(i)
        );
    }

    // Every acknowledged write is on every server, and they agree.
    let (ops, writes) = record.registers.values().fold((0, 0), |(o, w), evs| {
        (
            o + evs.len(),
            w + evs
                .iter()
                .filter(|e| matches!(e.op, Op::Write(_)) && e.ret.is_some())
                .count(),
        )
    });
    assert!(
        writes > 50 && record.created.len() > 50,
        "too little got through: {writes} register writes, {} creates",
        record.created.len()
    );
    let states: Vec<_> = (0..3).map(|i| ha.state_of(i)).collect();
    for (i, (names, _)) in states.iter().enumerate() {
        let missing: Vec<_> = record.created.difference(names).collect();
        assert!(
            missing.is_empty(),
            "server {} lost acknowledged creates: {missing:?}",
            i + 1
        );
    }
    assert_eq!(states[0], states[1]);
    assert_eq!(states[0], states[2]);

    // The register history is linearizable, key by key.
    for (key, events) in &record.registers {
        assert!(
            linearizable(events),
            "the history of {key} is not linearizable ({} operations)",
            events.len()
        );
    }
    eprintln!(
        "{ops} register operations, {} creates acknowledged, {} failed calls; checked after {:?}",
        record.created.len(),
        record.failures,
        started.elapsed()
    );

    // All three die at once and come back with the same state.
    for i in 0..3 {
        ha.kill(i);
    }
    for i in 0..3 {
        ha.spawn(i);
    }
    ha.wait_healthy(1, 3, 0);
    for i in 0..3 {
        assert_eq!(
            ha.state_of(i),
            states[0],
            "server {} after a full restart",
            i + 1
        );
    }

    // Removing a server: refused for one that does not exist, then done for a stopped one.
    let e = stderr(&ha.edgectl(&["member", "remove", "999"]));
    assert!(e.contains("there is no server 999"), "{e}");
    let leader = ha.wait_healthy(0, 3, 0);
    let victim = (leader + 1) % 3;
    let victim_id = ha
        .members(leader)
        .expect("members")
        .into_iter()
        .find(|m| ha.index_of_advertised(&m.address) == Some(victim))
        .map(|m| m.id)
        .expect("victim id");
    ha.kill(victim);
    let out = ha.edgectl(&["member", "remove", &victim_id.to_string()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let table = stdout(&ha.edgectl(&["member", "list"]));
    assert_eq!(table.lines().count(), 3, "{table}");
    assert!(
        !table.contains(&ha.servers[victim].relay.addr.to_string()),
        "{table}"
    );
    let survivor = (0..3).find(|&i| i != victim).unwrap_or(0);
    assert_eq!(ha.state_of(survivor).0, states[0].0);

    // The removed server, started again, learns it was removed (from the leader, when it
    // campaigns) and stops with what to do, instead of serving a store nobody updates.
    ha.spawn(victim);
    let status = wait_for(
        "the removed server to stop",
        Duration::from_secs(30),
        || {
            let d = ha.servers[victim].daemon.as_mut()?;
            d.child.try_wait().ok().flatten()
        },
    );
    assert!(!status.success());
    let log = ha.log(victim);
    assert!(
        log.contains("was removed from the cluster") && log.contains("start it with --join"),
        "{log}"
    );
    eprintln!("ha test took {:?}", started.elapsed());
}
