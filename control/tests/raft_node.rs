//! Raft nodes over real QUIC with mutual TLS on loopback: a single node that survives a restart
//! without re-initializing, a three-node cluster that converges and fails over (followers
//! forward writes and read-index requests to the leader), servers joining through a follower
//! and being removed, and blobs stored on a majority.

use edge_api::object::Object;
use edge_api::wire::ALPN_RAFT;
use edge_control::raft::{serve_raft_stream, QuicNetwork, RaftNode};
use edge_control::store::{self, Command, CommandResult, Precondition};
use openraft::BasicNode;
use rustls::pki_types::PrivateKeyDer;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A throwaway cluster CA and one certificate (SAN `edge-server`, server and client auth) that
/// every test node uses both to serve and to dial.
struct Pki {
    ca_pem: String,
    cert_pem: String,
    key_pem: String,
}

fn pki() -> Pki {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
        KeyUsagePurpose,
    };
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "edge test CA");
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(vec![edge_api::SERVER_NAME.to_string()]).unwrap();
    params
        .distinguished_name
        .push(DnType::CommonName, "edge test server");
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    let cert = params.signed_by(&key, &ca_cert, &ca_key).unwrap();
    Pki {
        ca_pem: ca_cert.pem(),
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    }
}

/// A QUIC endpoint on 127.0.0.1:0 that requires client certificates from the CA.
fn endpoint(pki: &Pki) -> quinn::Endpoint {
    let provider = edge_api::tls::crypto_provider();
    let mut roots = rustls::RootCertStore::empty();
    for c in edge_api::tls::parse_certs(&pki.ca_pem, "ca").unwrap() {
        roots.add(c).unwrap();
    }
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()
    .unwrap();
    let key: PrivateKeyDer = edge_api::tls::parse_key(&pki.key_pem, "key").unwrap();
    let mut tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(
            edge_api::tls::parse_certs(&pki.cert_pem, "cert").unwrap(),
            key,
        )
        .unwrap();
    tls.alpn_protocols = vec![ALPN_RAFT.to_vec()];
    let quic = quinn::crypto::rustls::QuicServerConfig::try_from(Arc::new(tls)).unwrap();
    let mut server = quinn::ServerConfig::with_crypto(Arc::new(quic));
    server.transport_config(Arc::new(edge_api::tls::transport_config()));
    quinn::Endpoint::server(server, "127.0.0.1:0".parse().unwrap()).unwrap()
}

fn network(pki: &Pki, ep: &quinn::Endpoint) -> QuicNetwork {
    let client =
        edge_api::tls::client_config(&pki.ca_pem, &pki.cert_pem, &pki.key_pem, ALPN_RAFT).unwrap();
    QuicNetwork::new(ep.clone(), client)
}

/// Hands every stream of every incoming connection to the node, as the real server does.
fn serve(ep: &quinn::Endpoint, node: &Arc<RaftNode>) -> tokio::task::JoinHandle<()> {
    let ep = ep.clone();
    let raft = node.clone();
    tokio::spawn(async move {
        while let Some(incoming) = ep.accept().await {
            let raft = raft.clone();
            tokio::spawn(async move {
                let Ok(conn) = incoming.await else { return };
                while let Ok((send, recv)) = conn.accept_bi().await {
                    let raft = raft.clone();
                    tokio::spawn(async move { serve_raft_stream(&raft, send, recv).await });
                }
            });
        }
    })
}

struct Member {
    node: Arc<RaftNode>,
    ep: quinn::Endpoint,
    accept: tokio::task::JoinHandle<()>,
}

async fn member(pki: &Pki, id: u64, db: &Path) -> Member {
    member_on(pki, endpoint(pki), id, db).await
}

/// A member on an endpoint bound already (a joiner needs its address before its id).
async fn member_on(pki: &Pki, ep: quinn::Endpoint, id: u64, db: &Path) -> Member {
    let addr = ep.local_addr().unwrap().to_string();
    let node = Arc::new(
        RaftNode::start(id, addr, db, network(pki, &ep))
            .await
            .unwrap(),
    );
    let accept = serve(&ep, &node);
    Member { node, ep, accept }
}

impl Member {
    async fn stop(self) {
        self.accept.abort();
        self.ep.close(0u32.into(), b"test stop");
        self.node.shutdown().await;
        // Streams being served hold the node until their connection notices the close.
        let start = Instant::now();
        while Arc::strong_count(&self.node) > 1 && start.elapsed() < Duration::from_secs(5) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        drop(self.node);
    }
}

fn namespace(name: &str) -> Object {
    let mut ns = edge_api::Namespace::default();
    ns.metadata.name = name.to_string();
    Object::Namespace(ns)
}

fn put(name: &str) -> Command {
    Command::Put {
        object: namespace(name),
        precondition: Precondition::Absent,
    }
}

fn stored_rv(r: CommandResult) -> u64 {
    match r {
        CommandResult::Stored(o) => o.meta().resource_version,
        other => panic!("expected Stored, got {other:?}"),
    }
}

fn read(node: &RaftNode, name: &str) -> Option<Object> {
    store::read_snapshot(&node.store.state())
        .unwrap()
        .get(&namespace(name).key())
        .unwrap()
}

async fn eventually(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_node_survives_restart_without_reinitializing() {
    let pki = pki();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("control.redb");

    let m = member(&pki, 1, &db).await;
    m.node.initialize_single().await.unwrap();
    assert_eq!(m.node.wait_leader(Duration::from_secs(5)).await.unwrap(), 1);
    let rv = stored_rv(m.node.propose(put("alpha")).await.unwrap());
    let obj = read(&m.node, "alpha").expect("alpha stored");
    assert_eq!(obj.meta().resource_version, rv);
    assert_eq!(
        store::read_snapshot(&m.node.store.state())
            .unwrap()
            .revision,
        rv
    );
    m.node.read_barrier().await.unwrap();
    // A second create of the same object is a rejection, not an error.
    assert!(matches!(
        m.node.propose(put("alpha")).await.unwrap(),
        CommandResult::Rejected(_)
    ));
    m.stop().await;

    let m = member(&pki, 1, &db).await;
    // Applied state is on disk: visible before raft even elects a leader.
    assert_eq!(read(&m.node, "alpha").unwrap().meta().resource_version, rv);
    assert!(m.node.raft.is_initialized().await.unwrap());
    m.node.initialize_single().await.unwrap(); // must be a no-op
    assert_eq!(m.node.wait_leader(Duration::from_secs(5)).await.unwrap(), 1);
    let rv2 = stored_rv(m.node.propose(put("beta")).await.unwrap());
    assert!(rv2 > rv, "revision {rv2} must follow {rv}");
    // Still the one original membership: no second initialization was logged.
    let membership = m.node.raft.metrics().borrow().membership_config.clone();
    assert_eq!(membership.log_id().map(|l| l.index), Some(0));
    m.stop().await;
}

/// Three voters in `dir`, and the leader's id once one is elected.
async fn three_voters(dir: &tempfile::TempDir) -> (Vec<Member>, u64) {
    let pki = pki();
    let mut members = Vec::new();
    for id in 1..=3u64 {
        members.push(member(&pki, id, &dir.path().join(format!("n{id}.redb"))).await);
    }
    let voters: BTreeMap<u64, BasicNode> = members
        .iter()
        .map(|m| (m.node.node_id, BasicNode::new(m.node.addr.clone())))
        .collect();
    members[0].node.raft.initialize(voters).await.unwrap();
    let leader = members[0]
        .node
        .wait_leader(Duration::from_secs(10))
        .await
        .unwrap();
    (members, leader)
}

fn index_of(members: &[Member], id: u64) -> usize {
    members.iter().position(|m| m.node.node_id == id).unwrap()
}

/// Proposes `name` on `node` and checks that no answer came within `stall`; the write goes on.
async fn unanswered_for(
    stall: Duration,
    node: &Arc<RaftNode>,
    name: &'static str,
    why_not: &str,
) -> tokio::task::JoinHandle<Result<CommandResult, edge_control::raft::ProposeError>> {
    let write = tokio::spawn({
        let node = node.clone();
        async move { node.propose(put(name)).await }
    });
    tokio::time::sleep(stall).await;
    assert!(!write.is_finished(), "{why_not}");
    write
}

/// The log reports an append written before its sync (so a leader replicates while it
/// syncs); this checks what must wait for the sync anyway, by stalling disks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_is_answered_and_applied_only_once_durable_on_a_majority() {
    let dir = tempfile::tempdir().unwrap();
    let (members, leader) = three_voters(&dir).await;
    let li = index_of(&members, leader);
    members[li].node.propose(put("warm")).await.unwrap();
    let followers: Vec<usize> = (0..3).filter(|i| *i != li).collect();
    let stall = Duration::from_millis(500);

    // Both followers' disks stall: the leader has its own copy only, no majority.
    for f in &followers {
        members[*f].node.store.log().hold_writes(true);
    }
    let write = unanswered_for(
        stall,
        &members[li].node,
        "followers-stalled",
        "answered with one durable copy of three",
    )
    .await;
    assert!(read(&members[li].node, "followers-stalled").is_none());
    for f in &followers {
        members[*f].node.store.log().hold_writes(false);
    }
    write.await.unwrap().unwrap();

    // The leader's disk stalls: the followers have it durable, so it is committed, but the
    // leader answers and applies only once its own copy is durable, and the followers do not
    // apply it before either (they are not told it is committed).
    members[li].node.store.log().hold_writes(true);
    let write = unanswered_for(
        stall,
        &members[li].node,
        "leader-stalled",
        "answered before the leader's copy was durable",
    )
    .await;
    for m in &members {
        assert!(
            read(&m.node, "leader-stalled").is_none(),
            "server {} applied an entry not durable on the leader",
            m.node.node_id
        );
    }
    members[li].node.store.log().hold_writes(false);
    write.await.unwrap().unwrap();
    eventually("all three apply it", Duration::from_secs(5), || {
        members
            .iter()
            .all(|m| read(&m.node, "leader-stalled").is_some())
    })
    .await;
    for m in members {
        m.stop().await;
    }
}

/// A follower answers a forwarded write once the leader applied it, before it applies it
/// itself; a decision on the follower's own state waits for that (`applied_own_writes`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_knows_whether_it_applied_the_writes_it_answered() {
    let dir = tempfile::tempdir().unwrap();
    let (members, leader) = three_voters(&dir).await;
    let fi = (index_of(&members, leader) + 1) % 3;
    let follower = &members[fi].node;
    follower.propose(put("warm")).await.unwrap();
    assert!(follower.applied_own_writes(Duration::from_secs(5)).await);
    assert!(read(follower, "warm").is_some());

    // Its disk stalls: the other two commit the write, so it is answered here, unapplied.
    follower.store.log().hold_writes(true);
    follower.propose(put("while-stalled")).await.unwrap();
    assert!(
        !follower
            .applied_own_writes(Duration::from_millis(300))
            .await
    );
    assert!(read(follower, "while-stalled").is_none());
    follower.store.log().hold_writes(false);
    assert!(follower.applied_own_writes(Duration::from_secs(5)).await);
    assert!(read(follower, "while-stalled").is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_converge_and_fail_over() {
    let dir = tempfile::tempdir().unwrap();
    let (mut members, leader) = three_voters(&dir).await;
    let li = index_of(&members, leader);
    let rv = stored_rv(members[li].node.propose(put("alpha")).await.unwrap());
    // A follower forwards writes to the leader, and its reads after a read barrier see them.
    let fi = (li + 1) % 3;
    let rv_f = stored_rv(members[fi].node.propose(put("via-follower")).await.unwrap());
    assert!(rv_f > rv);
    members[fi].node.read_barrier().await.unwrap();
    assert!(read(&members[fi].node, "via-follower").is_some());

    eventually(
        "all three state machines apply alpha",
        Duration::from_secs(5),
        || {
            members
                .iter()
                .all(|m| read(&m.node, "alpha").is_some_and(|o| o.meta().resource_version == rv))
        },
    )
    .await;

    let old = members.remove(li);
    old.stop().await;
    let start = Instant::now();
    let mut new_leader = None;
    while new_leader.is_none() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "no new leader elected"
        );
        new_leader = members
            .iter()
            .position(|m| m.node.is_leader() && m.node.node_id != leader);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let ni = new_leader.unwrap();
    let rv2 = stored_rv(members[ni].node.propose(put("beta")).await.unwrap());
    assert!(rv2 > rv);
    eventually("both survivors apply beta", Duration::from_secs(5), || {
        members.iter().all(|m| read(&m.node, "beta").is_some())
    })
    .await;
    for m in members {
        m.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_member_catches_up_from_a_snapshot_over_quic() {
    let pki = pki();
    let dir = tempfile::tempdir().unwrap();
    let m1 = member(&pki, 1, &dir.path().join("n1.redb")).await;
    m1.node.initialize_single().await.unwrap();
    m1.node.wait_leader(Duration::from_secs(5)).await.unwrap();
    let mut revision = 0;
    for name in ["alpha", "beta", "gamma"] {
        revision = stored_rv(m1.node.propose(put(name)).await.unwrap());
    }
    // Snapshot and drop the whole log, so the only way to catch up is InstallSnapshot. The
    // puts are applied (proposing answered), so the snapshot holds them; the metrics may show
    // it before they show the last apply.
    m1.node.raft.trigger().snapshot().await.unwrap();
    let built = m1
        .node
        .raft
        .wait(Some(Duration::from_secs(5)))
        .metrics(
            |m| m.snapshot.is_some() && m.snapshot == m.last_applied,
            "snapshot of everything applied",
        )
        .await
        .unwrap();
    let last = built.snapshot.expect("a snapshot").index;
    m1.node.raft.trigger().purge_log(last).await.unwrap();
    m1.node
        .raft
        .wait(Some(Duration::from_secs(5)))
        .metrics(|m| m.purged.is_some_and(|p| p.index == last), "log purged")
        .await
        .unwrap();

    let m2 = member(&pki, 2, &dir.path().join("n2.redb")).await;
    m1.node
        .raft
        .add_learner(2, BasicNode::new(m2.node.addr.clone()), true)
        .await
        .unwrap();
    eventually(
        "the learner installs the snapshot",
        Duration::from_secs(5),
        || {
            ["alpha", "beta", "gamma"]
                .iter()
                .all(|n| read(&m2.node, n).is_some())
        },
    )
    .await;
    assert_eq!(
        store::read_snapshot(&m2.node.store.state())
            .unwrap()
            .revision,
        revision
    );
    // History was reset to the snapshot's revision: older resumes must relist.
    let hub = m2.node.store.watch_hub();
    assert!(hub.subscribe_from(revision - 1).is_err());
    assert!(hub.subscribe_from(revision).is_ok());
    m2.stop().await;
    m1.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_peer_is_reported_unreachable_so_raft_backs_off() {
    use openraft::error::RPCError;
    use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
    let pki = pki();
    let ep = endpoint(&pki);
    // A bound UDP socket that never answers: the dial can only time out.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut factory = network(&pki, &ep);
    let mut peer = factory
        .new_client(9, &BasicNode::new(silent.local_addr().unwrap().to_string()))
        .await;
    let vote = || openraft::raft::VoteRequest::new(openraft::Vote::new(1, 1), None);
    let option = || RPCOption::new(Duration::from_secs(10));
    let err = peer.vote(vote(), option()).await.unwrap_err();
    assert!(matches!(err, RPCError::Unreachable(_)), "{err}");
    // Right after a failed dial, calls fail at once instead of dialing again.
    let start = Instant::now();
    let err = peer.vote(vote(), option()).await.unwrap_err();
    assert!(matches!(err, RPCError::Unreachable(_)), "{err}");
    assert!(start.elapsed() < Duration::from_millis(200));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn servers_join_through_any_member_store_blobs_on_a_majority_and_leave() {
    use edge_control::raft::join::promote_until_voter;
    use edge_control::raft::ProposeError;
    let pki = pki();
    let dir = tempfile::tempdir().unwrap();
    let m1 = member(&pki, 1, &dir.path().join("n1.redb")).await;
    m1.node.initialize_single().await.unwrap();
    m1.node.wait_leader(Duration::from_secs(5)).await.unwrap();

    let ep2 = endpoint(&pki);
    let id2 = m1
        .node
        .add_server(ep2.local_addr().unwrap().to_string())
        .await
        .unwrap();
    let m2 = member_on(&pki, ep2, id2, &dir.path().join("n2.redb")).await;
    tokio::time::timeout(
        Duration::from_secs(30),
        promote_until_voter(m2.node.clone()),
    )
    .await
    .expect("second server promoted");
    // The third joins through the second, a follower: the change is made by the leader.
    let ep3 = endpoint(&pki);
    let id3 = m2
        .node
        .add_server(ep3.local_addr().unwrap().to_string())
        .await
        .unwrap();
    let m3 = member_on(&pki, ep3, id3, &dir.path().join("n3.redb")).await;
    tokio::time::timeout(
        Duration::from_secs(30),
        promote_until_voter(m3.node.clone()),
    )
    .await
    .expect("third server promoted");
    assert!(id2 > 1 && id3 > id2, "fresh ids: {id2}, {id3}");
    let members = m3.node.members().await;
    assert_eq!(members.len(), 3, "{members:?}");
    assert!(members.iter().all(|m| m.reachable));
    let leaders = members
        .iter()
        .filter(|m| m.role == edge_api::wire::MemberRole::Leader)
        .count();
    assert_eq!(leaders, 1, "{members:?}");
    // The same address cannot join twice while it is a voter.
    let err = m1.node.add_server(m2.node.addr.clone()).await.unwrap_err();
    assert!(matches!(err, ProposeError::Refused(_)), "{err}");

    // A blob acknowledged by one server is on a majority at once, and on all eventually.
    let data = b"\0asm\x01\0\0\0 some component".to_vec();
    let digest = edge_api::wire::blob_digest(&data);
    m3.node
        .put_blob(digest.clone(), data.clone())
        .await
        .unwrap();
    let have = [&m1, &m2, &m3]
        .iter()
        .filter(|m| m.node.blobs.contains(&digest))
        .count();
    assert!(have >= 2, "a majority has the blob when it is acknowledged");
    eventually("every server has the blob", Duration::from_secs(10), || {
        [&m1, &m2, &m3]
            .iter()
            .all(|m| m.node.blobs.contains(&digest))
    })
    .await;
    assert_eq!(m1.node.get_blob(&digest).await.unwrap(), Some(data));

    // Removal: unknown ids are refused; a removed server is gone from the membership.
    let err = m2.node.remove_member(999).await.unwrap_err();
    assert!(err.to_string().contains("no server 999"), "{err}");
    m2.node.remove_member(id3).await.unwrap();
    eventually("the membership shrinks", Duration::from_secs(10), || {
        m1.node.member_addresses().len() == 2
    })
    .await;
    // The removed server finds out, by its log or from the leader when it campaigns.
    tokio::time::timeout(Duration::from_secs(10), m3.node.removed())
        .await
        .expect("the removed server learns it was removed");
    assert!(
        tokio::time::timeout(Duration::from_millis(200), m1.node.removed())
            .await
            .is_err(),
        "a member is not removed"
    );
    m3.stop().await;
    m2.node.remove_member(id2).await.unwrap();
    let err = m1.node.remove_member(1).await.unwrap_err();
    assert!(err.to_string().contains("only voter"), "{err}");
    m2.stop().await;
    m1.stop().await;
}
