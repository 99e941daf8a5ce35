//! Sou's peer-to-peer layer: a libp2p swarm (TCP, noise, yamux) with
//! gossipsub topics for transactions, consensus messages and blocks, a
//! request-response protocol for block sync, identify and ping, and
//! reconnection to configured peers with back-off.
//!
//! It moves bytes and decides nothing: every gossip message is handed to
//! the node, which decodes and checks it and reports back whether it is
//! valid. Only valid messages are forwarded; invalid ones count against
//! the peer that sent them, and a peer that keeps sending them is
//! disconnected and refused for a while.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use futures::StreamExt;
use libp2p::gossipsub::{self, IdentTopic, MessageAcceptance, MessageAuthenticity, ValidationMode};
use libp2p::request_response::{self, ProtocolSupport, ResponseChannel};
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{
    identify, identity, noise, ping, tcp, yamux, Multiaddr, PeerId, StreamProtocol, Swarm,
};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, info, warn};

pub use libp2p::gossipsub::MessageId;
pub use libp2p::Multiaddr as Address;
pub use libp2p::PeerId as Peer;

/// The gossip topics.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Topic {
    Transactions,
    Consensus,
    Blocks,
    /// Evidence of validator misbehaviour (double signing).
    Evidence,
}

impl Topic {
    fn name(self) -> &'static str {
        match self {
            Topic::Transactions => "sou/tx/1",
            Topic::Consensus => "sou/consensus/1",
            Topic::Blocks => "sou/block/1",
            Topic::Evidence => "sou/evidence/1",
        }
    }

    fn all() -> [Topic; 4] {
        [
            Topic::Transactions,
            Topic::Consensus,
            Topic::Blocks,
            Topic::Evidence,
        ]
    }

    fn from_hash(h: &gossipsub::TopicHash) -> Option<Topic> {
        Topic::all()
            .into_iter()
            .find(|t| IdentTopic::new(t.name()).hash() == *h)
    }
}

/// A block-sync request: finalized blocks from `from` upward, and the
/// bodies of proposed blocks (not yet final) named by hash.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncRequest {
    pub from: u64,
    pub max_blocks: u32,
    #[serde(default)]
    pub bodies: Vec<[u8; 32]>,
    /// Transactions named by hash (to complete a compact block).
    #[serde(default)]
    pub txs: Vec<[u8; 32]>,
    /// The asker's consensus view: when not 0, the answer carries what
    /// the responder's consensus engine has for a peer at that view.
    #[serde(default)]
    pub view: u64,
}

/// The answer: the responder's tip height, encoded (block, finality proof)
/// pairs in height order, and the encoded bodies asked for that it holds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncResponse {
    pub tip: u64,
    pub blocks: Vec<(Vec<u8>, Vec<u8>)>,
    #[serde(default)]
    pub bodies: Vec<Vec<u8>>,
    /// The encoded transactions asked for that it holds.
    #[serde(default)]
    pub txs: Vec<Vec<u8>>,
    /// Encoded consensus messages (certificates and the responder's own
    /// votes) for an asker at `SyncRequest::view`.
    #[serde(default)]
    pub consensus: Vec<Vec<u8>>,
}

#[derive(Clone, Debug)]
pub struct P2pConfig {
    /// Our identity's ed25519 secret.
    pub secret: [u8; 32],
    pub listen: Multiaddr,
    /// Peers to stay connected to.
    pub peers: Vec<Multiaddr>,
    /// Largest gossip message (a full block must fit).
    pub max_message_bytes: usize,
    /// Largest block-sync response.
    pub max_sync_response_bytes: u64,
    /// Invalid messages after which a peer is disconnected.
    pub max_invalid_messages: u32,
    /// How long a disconnected offender is refused.
    pub ban: Duration,
}

impl P2pConfig {
    pub fn new(secret: [u8; 32], listen: Multiaddr, peers: Vec<Multiaddr>) -> P2pConfig {
        P2pConfig {
            secret,
            listen,
            peers,
            max_message_bytes: 16 * 1024 * 1024,
            max_sync_response_bytes: 64 * 1024 * 1024,
            max_invalid_messages: 20,
            ban: Duration::from_secs(60),
        }
    }
}

/// A gossip message's id: 16 bytes of a hash of its author and sequence
/// number (gossipsub's default spells both out in base58 and decimal,
/// about 75 bytes, and every IHAVE and IDONTWANT lists ids). The author
/// and a random sequence number make a message sent again, with the same
/// bytes, a new message, not a duplicate.
fn message_id(m: &gossipsub::Message) -> MessageId {
    let mut h = blake3::Hasher::new();
    if let Some(author) = &m.source {
        h.update(&author.to_bytes());
    }
    match m.sequence_number {
        Some(n) => h.update(&n.to_be_bytes()),
        None => h.update(&m.data),
    };
    MessageId::from(&h.finalize().as_bytes()[..16])
}

/// What the network delivers to the node.
#[derive(Debug)]
pub enum Event {
    Gossip {
        topic: Topic,
        data: Vec<u8>,
        source: PeerId,
        id: MessageId,
    },
    SyncRequest {
        peer: PeerId,
        request: SyncRequest,
        channel: ResponseChannel<SyncResponse>,
    },
    PeerCount(usize),
}

enum Command {
    Publish(Topic, Vec<u8>),
    Report {
        id: MessageId,
        source: PeerId,
        acceptance: MessageAcceptance,
    },
    Respond(ResponseChannel<SyncResponse>, SyncResponse),
    ReconnectAll,
    Sync {
        request: SyncRequest,
        prefer: Option<PeerId>,
        reply: oneshot::Sender<Option<SyncResponse>>,
    },
}

/// The node's handle on the network.
#[derive(Clone, Debug)]
pub struct P2p {
    commands: mpsc::UnboundedSender<Command>,
    pub peer_id: PeerId,
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Command")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("network setup: {0}")]
    Setup(String),
}

#[derive(NetworkBehaviour)]
struct Behaviour {
    gossipsub: gossipsub::Behaviour,
    sync: request_response::cbor::Behaviour<SyncRequest, SyncResponse>,
    identify: identify::Behaviour,
    ping: ping::Behaviour,
}

impl P2p {
    /// Starts the swarm on the current tokio runtime; returns the handle and
    /// the stream of events.
    pub fn start(cfg: P2pConfig) -> Result<(P2p, mpsc::Receiver<Event>), Error> {
        let setup = |e: &dyn std::fmt::Display| Error::Setup(e.to_string());
        let key = identity::Keypair::ed25519_from_bytes(cfg.secret).map_err(|e| setup(&e))?;
        let peer_id = key.public().to_peer_id();
        let max_message = cfg.max_message_bytes;
        let max_response = cfg.max_sync_response_bytes;
        let mut swarm = libp2p::SwarmBuilder::with_existing_identity(key)
            .with_tokio()
            .with_tcp(
                tcp::Config::default().nodelay(true),
                noise::Config::new,
                yamux::Config::default,
            )
            .map_err(|e| setup(&e))?
            .with_behaviour(|key| {
                let gossip_cfg = gossipsub::ConfigBuilder::default()
                    .max_transmit_size(max_message)
                    // Gossip messages are not signed: every consensus message
                    // carries its validator's signature, every transaction
                    // its sender's, and a block is checked against its roots
                    // and its certificate; the peer that relayed a message
                    // is known from the (noise-authenticated) connection,
                    // and that is who is scored. Signing each message again
                    // cost an ed25519 signature per publish and a
                    // verification per copy received, duplicates included.
                    // Permissive still reads the author and sequence number
                    // that message ids are made of (with `None` every
                    // received message got the same id, and all but the
                    // first were dropped as duplicates).
                    .validation_mode(ValidationMode::Permissive)
                    .validate_messages()
                    .message_id_fn(message_id)
                    // IHAVE and IDONTWANT carry message ids; gossipsub's
                    // default cap of 16 KiB of them per RPC is reached by a
                    // few hundred messages in a heartbeat, and a reader
                    // that meets a larger RPC drops the stream with every
                    // message queued behind it. The RPC as a whole is
                    // already bounded by the transmit size.
                    .max_control_message_size(max_message)
                    .heartbeat_interval(Duration::from_millis(500))
                    // Small networks: every peer in the mesh (a peer joins
                    // while the mesh has fewer than 5), so messages are
                    // pushed, not announced and pulled a heartbeat later.
                    .mesh_outbound_min(0)
                    .flood_publish(true)
                    .build()
                    .map_err(|e| e.to_string())?;
                let mut gossipsub = gossipsub::Behaviour::new(
                    // Our peer id as author and a random sequence number: ids
                    // (author and number) stay unique, so a message sent
                    // again on a timeout is not taken for a duplicate.
                    MessageAuthenticity::Author(key.public().to_peer_id()),
                    gossip_cfg,
                )?;
                let params = gossipsub::PeerScoreParams {
                    // Validators often share an address (a testnet on one
                    // machine, several behind one NAT): past 10 peers on
                    // one IP, the default penalty graylists every one.
                    ip_colocation_factor_weight: 0.0,
                    // A validator slowed by load must stay in the mesh: a
                    // peer whose queue overflowed lost score per message,
                    // was pruned, and then only heard of messages by IHAVE.
                    slow_peer_weight: 0.0,
                    ..Default::default()
                };
                let thresholds = gossipsub::PeerScoreThresholds::default();
                gossipsub.with_peer_score(params, thresholds)?;
                let codec = request_response::cbor::codec::Codec::default()
                    .set_request_size_maximum(256 * 1024)
                    .set_response_size_maximum(max_response);
                let sync = request_response::Behaviour::with_codec(
                    codec,
                    [(StreamProtocol::new("/sou/sync/1"), ProtocolSupport::Full)],
                    request_response::Config::default()
                        .with_request_timeout(Duration::from_secs(30)),
                );
                let identify =
                    identify::Behaviour::new(identify::Config::new("/sou/1".into(), key.public()));
                let ping = ping::Behaviour::new(ping::Config::new());
                Ok(Behaviour {
                    gossipsub,
                    sync,
                    identify,
                    ping,
                })
            })
            .map_err(|e| setup(&e))?
            .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(3600)))
            .build();
        for t in Topic::all() {
            swarm
                .behaviour_mut()
                .gossipsub
                .subscribe(&IdentTopic::new(t.name()))
                .map_err(|e| setup(&e))?;
        }
        swarm.listen_on(cfg.listen.clone()).map_err(|e| setup(&e))?;
        let (commands, rx) = mpsc::unbounded_channel();
        let (events_tx, events) = mpsc::channel(65_536);
        tokio::spawn(run(swarm, cfg, rx, events_tx));
        Ok((P2p { commands, peer_id }, events))
    }

    pub fn publish(&self, topic: Topic, data: Vec<u8>) {
        let _ = self.commands.send(Command::Publish(topic, data));
    }

    /// Says whether a gossip message is valid: valid ones are forwarded,
    /// invalid ones count against their sender.
    pub fn report(&self, id: MessageId, source: PeerId, valid: bool) {
        let acceptance = if valid {
            MessageAcceptance::Accept
        } else {
            MessageAcceptance::Reject
        };
        let _ = self.commands.send(Command::Report {
            id,
            source,
            acceptance,
        });
    }

    /// Neither accepts nor rejects a message (it is not forwarded, and its
    /// sender is not penalised): for one this node could not look at.
    pub fn ignore(&self, id: MessageId, source: PeerId) {
        let _ = self.commands.send(Command::Report {
            id,
            source,
            acceptance: MessageAcceptance::Ignore,
        });
    }

    pub fn respond(&self, channel: ResponseChannel<SyncResponse>, response: SyncResponse) {
        let _ = self.commands.send(Command::Respond(channel, response));
    }

    /// Drops every connection; configured peers are dialled again at once.
    /// For a node that hears nothing on gossip although peers are connected.
    pub fn reconnect_all(&self) {
        let _ = self.commands.send(Command::ReconnectAll);
    }

    /// Asks a connected peer (any) for blocks; `None` if nobody answered.
    pub async fn sync(&self, request: SyncRequest) -> Option<SyncResponse> {
        self.sync_from(None, request).await
    }

    /// [`P2p::sync`], asking `prefer` if it is connected (for example the
    /// peer that sent a compact block: it holds the block's transactions).
    pub async fn sync_from(
        &self,
        prefer: Option<PeerId>,
        request: SyncRequest,
    ) -> Option<SyncResponse> {
        let (reply, rx) = oneshot::channel();
        self.commands
            .send(Command::Sync {
                request,
                prefer,
                reply,
            })
            .ok()?;
        rx.await.ok().flatten()
    }
}

struct State {
    cfg: P2pConfig,
    connected: HashSet<PeerId>,
    invalid: HashMap<PeerId, u32>,
    banned: HashMap<PeerId, Instant>,
    /// Per configured address: when to dial next, and the back-off.
    redial: HashMap<Multiaddr, (Instant, Duration)>,
    pending_sync:
        HashMap<request_response::OutboundRequestId, oneshot::Sender<Option<SyncResponse>>>,
    next_sync_peer: usize,
}

async fn run(
    mut swarm: Swarm<Behaviour>,
    cfg: P2pConfig,
    mut commands: mpsc::UnboundedReceiver<Command>,
    events: mpsc::Sender<Event>,
) {
    let mut st = State {
        redial: cfg
            .peers
            .iter()
            .map(|a| (a.clone(), (Instant::now(), Duration::from_millis(200))))
            .collect(),
        cfg,
        connected: HashSet::new(),
        invalid: HashMap::new(),
        banned: HashMap::new(),
        pending_sync: HashMap::new(),
        next_sync_peer: 0,
    };
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    loop {
        tokio::select! {
            _ = tick.tick() => redial(&mut swarm, &mut st),
            cmd = commands.recv() => {
                let Some(cmd) = cmd else { return };
                command(&mut swarm, &mut st, cmd);
            }
            ev = swarm.select_next_some() => {
                if !swarm_event(&mut swarm, &mut st, ev, &events).await {
                    return;
                }
            }
        }
    }
}

fn redial(swarm: &mut Swarm<Behaviour>, st: &mut State) {
    let now = Instant::now();
    st.banned.retain(|_, until| *until > now);
    if st.connected.len() >= st.cfg.peers.len() {
        return;
    }
    for (addr, (at, backoff)) in st.redial.iter_mut() {
        if *at <= now {
            let _ = swarm.dial(addr.clone());
            *backoff = (*backoff * 2).min(Duration::from_secs(10));
            *at = now + *backoff;
        }
    }
}

fn command(swarm: &mut Swarm<Behaviour>, st: &mut State, cmd: Command) {
    match cmd {
        Command::Publish(topic, data) => {
            if let Err(e) = swarm
                .behaviour_mut()
                .gossipsub
                .publish(IdentTopic::new(topic.name()), data)
            {
                debug!(error = %e, ?topic, "publish");
            }
        }
        Command::Report {
            id,
            source,
            acceptance,
        } => {
            let valid = !matches!(acceptance, MessageAcceptance::Reject);
            swarm
                .behaviour_mut()
                .gossipsub
                .report_message_validation_result(&id, &source, acceptance);
            if !valid {
                let n = st.invalid.entry(source).or_default();
                *n += 1;
                if *n >= st.cfg.max_invalid_messages {
                    warn!(peer = %source, invalid = *n, "disconnecting a peer that keeps sending invalid messages");
                    st.banned.insert(source, Instant::now() + st.cfg.ban);
                    st.invalid.remove(&source);
                    let _ = swarm.disconnect_peer_id(source);
                }
            }
        }
        Command::ReconnectAll => {
            for peer in st.connected.iter().copied().collect::<Vec<_>>() {
                let _ = swarm.disconnect_peer_id(peer);
            }
        }
        Command::Respond(channel, response) => {
            let _ = swarm.behaviour_mut().sync.send_response(channel, response);
        }
        Command::Sync {
            request,
            prefer,
            reply,
        } => {
            let peers: Vec<PeerId> = st.connected.iter().copied().collect();
            if peers.is_empty() {
                let _ = reply.send(None);
                return;
            }
            let peer = match prefer {
                Some(p) if st.connected.contains(&p) => p,
                _ => {
                    st.next_sync_peer = st.next_sync_peer.wrapping_add(1);
                    peers[st.next_sync_peer % peers.len()]
                }
            };
            let id = swarm.behaviour_mut().sync.send_request(&peer, request);
            st.pending_sync.insert(id, reply);
        }
    }
}

/// Returns false when the node stopped listening for events.
async fn swarm_event(
    swarm: &mut Swarm<Behaviour>,
    st: &mut State,
    ev: SwarmEvent<BehaviourEvent>,
    events: &mpsc::Sender<Event>,
) -> bool {
    match ev {
        SwarmEvent::NewListenAddr { address, .. } => info!(%address, "p2p listening"),
        SwarmEvent::ConnectionEstablished { peer_id, .. } => {
            if st.banned.contains_key(&peer_id) {
                let _ = swarm.disconnect_peer_id(peer_id);
                return true;
            }
            st.connected.insert(peer_id);
            return events
                .send(Event::PeerCount(st.connected.len()))
                .await
                .is_ok();
        }
        SwarmEvent::ConnectionClosed {
            peer_id,
            num_established: 0,
            ..
        } => {
            st.connected.remove(&peer_id);
            // Dial configured peers again soon.
            for (at, backoff) in st.redial.values_mut() {
                *at = Instant::now() + Duration::from_millis(200);
                *backoff = Duration::from_millis(200);
            }
            return events
                .send(Event::PeerCount(st.connected.len()))
                .await
                .is_ok();
        }
        SwarmEvent::Behaviour(BehaviourEvent::Gossipsub(gossipsub::Event::Message {
            propagation_source,
            message_id,
            message,
        })) => {
            let Some(topic) = Topic::from_hash(&message.topic) else {
                swarm
                    .behaviour_mut()
                    .gossipsub
                    .report_message_validation_result(
                        &message_id,
                        &propagation_source,
                        MessageAcceptance::Reject,
                    );
                return true;
            };
            return events
                .send(Event::Gossip {
                    topic,
                    data: message.data,
                    source: propagation_source,
                    id: message_id,
                })
                .await
                .is_ok();
        }
        SwarmEvent::Behaviour(BehaviourEvent::Sync(request_response::Event::Message {
            peer,
            message,
            ..
        })) => match message {
            request_response::Message::Request {
                request, channel, ..
            } => {
                return events
                    .send(Event::SyncRequest {
                        peer,
                        request,
                        channel,
                    })
                    .await
                    .is_ok();
            }
            request_response::Message::Response {
                request_id,
                response,
            } => {
                if let Some(reply) = st.pending_sync.remove(&request_id) {
                    let _ = reply.send(Some(response));
                }
            }
        },
        SwarmEvent::Behaviour(BehaviourEvent::Sync(request_response::Event::OutboundFailure {
            request_id,
            ..
        })) => {
            if let Some(reply) = st.pending_sync.remove(&request_id) {
                let _ = reply.send(None);
            }
        }
        _ => {}
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn free_port() -> u16 {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
        l.local_addr().expect("local address").port()
    }

    fn addr(port: u16) -> Multiaddr {
        format!("/ip4/127.0.0.1/tcp/{port}")
            .parse()
            .expect("valid address")
    }

    /// A node that accepts every gossip message and passes its topic and
    /// bytes on.
    fn node(i: u8, ports: &[u16]) -> (P2p, mpsc::UnboundedReceiver<(Topic, Vec<u8>)>) {
        let peers = ports
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != usize::from(i))
            .map(|(_, p)| addr(*p))
            .collect();
        let cfg = P2pConfig::new([i + 1; 32], addr(ports[usize::from(i)]), peers);
        let (p2p, mut events) = P2p::start(cfg).expect("start a node");
        let (tx, rx) = mpsc::unbounded_channel();
        let handle = p2p.clone();
        tokio::spawn(async move {
            while let Some(ev) = events.recv().await {
                if let Event::Gossip {
                    topic,
                    data,
                    source,
                    id,
                } = ev
                {
                    handle.report(id, source, true);
                    if tx.send((topic, data)).is_err() {
                        return;
                    }
                }
            }
        });
        (p2p, rx)
    }

    /// A burst of a few thousand messages among 14 nodes on one address:
    /// the ids of a few heartbeats' messages, announced to the peers outside
    /// the mesh, no longer fit gossipsub's default 16 KiB of control data
    /// per RPC, and a reader dropped such a stream with the messages behind
    /// it. Every message must still reach every peer, and so must one
    /// published after the burst. (With the default limit, a peer got 3,527
    /// of 6,000 and not the last one.)
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_burst_of_gossip_reaches_every_peer_and_gossip_keeps_flowing() {
        const BURST: usize = 6_000;
        // More peers than a mesh may hold (12, then pruned to 6), so some
        // are sent IHAVEs.
        const NODES: u8 = 14;
        let ports: Vec<u16> = (0..NODES).map(|_| free_port()).collect();
        let (sender, _own) = node(0, &ports);
        let mut receivers: Vec<_> = (1..NODES).map(|i| node(i, &ports).1).collect();
        let start = Instant::now();
        let deadline = start + Duration::from_secs(90);

        // Subscriptions take a heartbeat or two to spread: probe until every
        // peer hears one.
        let mut heard = vec![false; receivers.len()];
        while !heard.iter().all(|h| *h) {
            assert!(Instant::now() < deadline, "not every peer heard a probe");
            sender.publish(Topic::Consensus, b"probe".to_vec());
            tokio::time::sleep(Duration::from_millis(200)).await;
            for (h, rx) in heard.iter_mut().zip(receivers.iter_mut()) {
                while let Ok((_, data)) = rx.try_recv() {
                    *h |= data == b"probe";
                }
            }
        }

        // Gossipsub's first heartbeat, which builds the mesh, is 5 s in.
        tokio::time::sleep_until((start + Duration::from_secs(6)).into()).await;
        // Spread over 3 s, so heartbeats announce messages while others
        // are still on their way.
        for i in 0..BURST {
            let mut data = format!("burst {i:05} ").into_bytes();
            data.resize(120, b'.');
            sender.publish(Topic::Transactions, data);
            if i % 100 == 99 {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        // Let a few heartbeats announce the burst before the last message.
        tokio::time::sleep(Duration::from_secs(2)).await;
        sender.publish(Topic::Consensus, b"after the burst".to_vec());

        for (n, rx) in receivers.iter_mut().enumerate() {
            let mut got = HashSet::new();
            let mut after = false;
            while got.len() < BURST || !after {
                let left = deadline.saturating_duration_since(Instant::now());
                let Ok(Some((topic, data))) = tokio::time::timeout(left, rx.recv()).await else {
                    panic!(
                        "peer {} got {} of {BURST} burst messages, the last one: {after}",
                        n + 1,
                        got.len()
                    );
                };
                match topic {
                    Topic::Transactions => {
                        got.insert(data);
                    }
                    _ => after |= data == b"after the burst",
                }
            }
        }
    }
}
