//! Table-driven tests of the state machine: each step is an input, the
//! actions expected from it (summarised as text), and the view after it.

use sou_consensus::{
    Action, Application, Certificate, Config, Engine, Input, Message, Proposal, Recovered,
    SignedVote, Timer, ValidatorSet, View, Vote,
};
use sou_types::{Hash, Keypair};

const NS: &[u8] = b"sou-table";

struct ScriptedApp {
    valid: bool,
    verified: Vec<Proposal>,
}

impl Application for ScriptedApp {
    fn propose(&mut self, view: View, parent: Hash, _parent_height: u64) -> Option<Hash> {
        Some(block(view, parent))
    }
    fn verify(&mut self, p: &Proposal) -> sou_consensus::Verdict {
        self.verified.push(p.clone());
        self.valid.into()
    }
}

fn block(view: View, parent: Hash) -> Hash {
    let mut h = Hash::hasher("sou table block v1");
    h.update(&view.to_le_bytes());
    h.update(&parent.0);
    Hash::from_hasher(&h)
}

fn keys() -> Vec<Keypair> {
    (0..4)
        .map(|i| Keypair::derive_insecure(99, &format!("v{i}")))
        .collect()
}

fn set() -> ValidatorSet {
    ValidatorSet::new(0, keys().iter().map(|k| (k.public(), 1)).collect())
}

const GENESIS: Hash = Hash([7; 32]);

fn cfg() -> Config {
    let mut c = Config::new(NS.to_vec());
    c.view_timeout_ms = 1_000;
    c.max_view_timeout_ms = 8_000;
    c
}

fn engine(me: usize, recovered: Recovered) -> Engine {
    let k = &keys()[me];
    Engine::new(
        cfg(),
        Keypair::from_secret(k.secret_bytes()),
        set(),
        GENESIS,
        0,
        recovered,
    )
}

fn proposal(view: View) -> Proposal {
    Proposal {
        epoch: 0,
        view,
        parent_view: 0,
        parent: GENESIS,
        height: 1,
        payload: block(view, GENESIS),
    }
}

fn signed(by: usize, vote: Vote) -> SignedVote {
    let k = &keys()[by];
    SignedVote {
        signature: k.sign(&vote.signing_digest(NS)),
        vote,
        signer: by as u32,
    }
}

fn vote_msg(by: usize, vote: Vote) -> Input {
    Input::Message(Message::Vote(signed(by, vote)))
}

fn nullify(view: View) -> Vote {
    Vote::Nullify { epoch: 0, view }
}

/// A short text for an action, so tables read like the protocol.
fn describe(a: &Action) -> String {
    let vote = |v: &Vote| match v {
        Vote::Notarize(p) => format!("notarize v{}", p.view),
        Vote::Nullify { view, .. } => format!("nullify v{view}"),
        Vote::Finalize(p) => format!("finalize v{}", p.view),
    };
    match a {
        Action::Persist(v) => format!("persist {}", vote(&v.vote)),
        Action::Broadcast(Message::Vote(v)) => format!("send {} by {}", vote(&v.vote), v.signer),
        Action::Broadcast(Message::Certificate(c)) => format!("send cert {}", vote(&c.vote)),
        Action::ScheduleTimer {
            view,
            timer,
            after_ms,
        } => format!("timer {timer:?} v{view} {after_ms}"),
        Action::Notarized(c) => format!("notarized v{}", c.view()),
        Action::Finalized(c) => format!("finalized v{}", c.view()),
        Action::Evidence(e) => format!(
            "evidence against {} v{}",
            e.first.signer,
            e.first.vote.view()
        ),
    }
}

struct Step {
    input: Input,
    expect: Vec<String>,
    view: View,
}

fn step(input: Input, expect: &[&str], view: View) -> Step {
    Step {
        input,
        expect: expect.iter().map(|s| s.to_string()).collect(),
        view,
    }
}

fn run(name: &str, mut e: Engine, app: &mut ScriptedApp, steps: Vec<Step>) -> Engine {
    for (i, s) in steps.into_iter().enumerate() {
        let got: Vec<String> = e.handle(s.input, app).iter().map(describe).collect();
        assert_eq!(got, s.expect, "{name}, step {i}: actions");
        assert_eq!(e.view(), s.view, "{name}, step {i}: view");
    }
    e
}

fn leader(view: View) -> usize {
    set().leader(view) as usize
}

/// Three validators other than `not`.
fn others(not: usize) -> Vec<usize> {
    (0..4).filter(|i| *i != not).collect()
}

#[test]
fn leader_proposes_gathers_a_quorum_and_finalizes() {
    let me = leader(1);
    let o = others(me);
    let p = proposal(1);
    let mut app = ScriptedApp {
        valid: true,
        verified: vec![],
    };
    let next_leader_timer = if leader(2) == me {
        vec!["timer Propose v2 0"]
    } else {
        vec![]
    };
    let mut on_quorum = vec![
        "notarized v1".to_string(),
        "send cert notarize v1".to_string(),
        "persist finalize v1".to_string(),
        format!("send finalize v1 by {me}"),
        "timer View v2 1000".to_string(),
    ];
    on_quorum.extend(next_leader_timer.iter().map(|s| s.to_string()));
    let on_quorum: Vec<&str> = on_quorum.iter().map(String::as_str).collect();
    let e = run(
        "leader",
        engine(me, Recovered::default()),
        &mut app,
        vec![
            step(
                Input::Start,
                &["timer View v1 1000", "timer Propose v1 0"],
                1,
            ),
            step(
                Input::Timer {
                    view: 1,
                    timer: Timer::Propose,
                },
                &["persist notarize v1", &format!("send notarize v1 by {me}")],
                1,
            ),
            // Two of four (with ours) is not more than two thirds.
            step(vote_msg(o[0], Vote::Notarize(p.clone())), &[], 1),
            step(vote_msg(o[1], Vote::Notarize(p.clone())), &on_quorum, 2),
            step(vote_msg(o[0], Vote::Finalize(p.clone())), &[], 2),
            step(
                vote_msg(o[1], Vote::Finalize(p)),
                &["finalized v1", "send cert finalize v1"],
                2,
            ),
            // A stale timer of view 1 does nothing.
            step(
                Input::Timer {
                    view: 1,
                    timer: Timer::View,
                },
                &[],
                2,
            ),
        ],
    );
    assert_eq!(e.last_finalized(), 1);
    assert!(
        app.verified.is_empty(),
        "a leader does not verify its own proposal"
    );
}

#[test]
fn follower_votes_for_a_valid_proposal_and_nullifies_an_invalid_one() {
    let l = leader(1);
    let me = others(l)[0];
    let p = proposal(1);
    let mut app = ScriptedApp {
        valid: true,
        verified: vec![],
    };
    run(
        "follower, valid",
        engine(me, Recovered::default()),
        &mut app,
        vec![
            step(Input::Start, &["timer View v1 1000"], 1),
            step(
                vote_msg(l, Vote::Notarize(p.clone())),
                &[
                    &format!("send notarize v1 by {l}"),
                    "persist notarize v1",
                    &format!("send notarize v1 by {me}"),
                ],
                1,
            ),
            // The same proposal again changes nothing.
            step(vote_msg(l, Vote::Notarize(p.clone())), &[], 1),
        ],
    );
    assert_eq!(app.verified, vec![p.clone()]);

    let mut app = ScriptedApp {
        valid: false,
        verified: vec![],
    };
    run(
        "follower, invalid",
        engine(me, Recovered::default()),
        &mut app,
        vec![
            step(Input::Start, &["timer View v1 1000"], 1),
            step(
                vote_msg(l, Vote::Notarize(p)),
                &[
                    &format!("send notarize v1 by {l}"),
                    "persist nullify v1",
                    &format!("send nullify v1 by {me}"),
                ],
                1,
            ),
        ],
    );
}

#[test]
fn a_timeout_nullifies_and_a_nullification_moves_on_with_back_off() {
    let me = others(leader(1))[0];
    let o = others(me);
    let mut app = ScriptedApp {
        valid: true,
        verified: vec![],
    };
    let mut moved = vec![
        "send cert nullify v1".to_string(),
        "timer View v2 2000".to_string(),
    ];
    if leader(2) == me {
        moved.push("timer Propose v2 0".to_string());
    }
    let moved: Vec<&str> = moved.iter().map(String::as_str).collect();
    let e = run(
        "timeout",
        engine(me, Recovered::default()),
        &mut app,
        vec![
            step(Input::Start, &["timer View v1 1000"], 1),
            step(
                Input::Timer {
                    view: 1,
                    timer: Timer::View,
                },
                &[
                    "persist nullify v1",
                    &format!("send nullify v1 by {me}"),
                    "timer View v1 1000",
                ],
                1,
            ),
            // The timer again: the nullify is sent again, not signed again.
            step(
                Input::Timer {
                    view: 1,
                    timer: Timer::View,
                },
                &[
                    &format!("send nullify v1 by {me}"),
                    &format!("send nullify v1 by {me}"),
                    "timer View v1 1000",
                ],
                1,
            ),
            step(vote_msg(o[0], nullify(1)), &[], 1),
            step(vote_msg(o[1], nullify(1)), &moved, 2),
        ],
    );
    assert_eq!(e.last_finalized(), 0);
}

#[test]
fn no_finalize_after_nullify_even_when_the_view_is_notarized() {
    let l = leader(1);
    let me = others(l)[0];
    let o = others(me);
    let p = proposal(1);
    let mut app = ScriptedApp {
        valid: true,
        verified: vec![],
    };
    let mut e = run(
        "nullify then notarization",
        engine(me, Recovered::default()),
        &mut app,
        vec![
            step(Input::Start, &["timer View v1 1000"], 1),
            step(
                Input::Timer {
                    view: 1,
                    timer: Timer::View,
                },
                &[
                    "persist nullify v1",
                    &format!("send nullify v1 by {me}"),
                    "timer View v1 1000",
                ],
                1,
            ),
        ],
    );
    // A notarization for view 1 (from the other three) arrives.
    let sigs: Vec<_> = o
        .iter()
        .map(|&i| (i as u32, signed(i, Vote::Notarize(p.clone())).signature))
        .collect();
    let cert = Certificate {
        vote: Vote::Notarize(p),
        signatures: sigs,
    };
    let got: Vec<String> = e
        .handle(Input::Message(Message::Certificate(cert)), &mut app)
        .iter()
        .map(describe)
        .collect();
    assert!(got.contains(&"notarized v1".to_string()), "{got:?}");
    assert!(
        !got.iter().any(|a| a.contains("finalize")),
        "finalized a view it nullified: {got:?}"
    );
    assert_eq!(e.view(), 2);
}

#[test]
fn bad_input_is_ignored() {
    let l = leader(1);
    let me = others(l)[0];
    let p = proposal(1);
    let mut app = ScriptedApp {
        valid: true,
        verified: vec![],
    };
    let mut forged = signed(l, Vote::Notarize(p.clone()));
    forged.signature.0[0] ^= 1;
    let mut wrong_epoch = p.clone();
    wrong_epoch.epoch = 5;
    let mut unknown = signed(l, Vote::Notarize(p.clone()));
    unknown.signer = 9;
    let under_quorum = Certificate {
        vote: Vote::Notarize(p.clone()),
        signatures: vec![(l as u32, signed(l, Vote::Notarize(p)).signature)],
    };
    run(
        "bad input",
        engine(me, Recovered::default()),
        &mut app,
        vec![
            step(Input::Start, &["timer View v1 1000"], 1),
            step(Input::Message(Message::Vote(forged)), &[], 1),
            step(vote_msg(l, Vote::Notarize(wrong_epoch)), &[], 1),
            step(Input::Message(Message::Vote(unknown)), &[], 1),
            step(Input::Message(Message::Certificate(under_quorum)), &[], 1),
            // Far-future views are ignored.
            step(vote_msg(l, nullify(1_000_000)), &[], 1),
        ],
    );
    assert!(app.verified.is_empty());
}

#[test]
fn conflicting_votes_become_evidence_once() {
    let l = leader(1);
    let me = others(l)[0];
    let x = others(me).into_iter().find(|i| *i != l).unwrap();
    let p = proposal(1);
    let mut q = p.clone();
    q.payload = Hash([3; 32]);
    let mut third = p.clone();
    third.payload = Hash([5; 32]);
    let mut app = ScriptedApp {
        valid: true,
        verified: vec![],
    };
    let evidence = format!("evidence against {x} v1");
    run(
        "evidence",
        engine(me, Recovered::default()),
        &mut app,
        vec![
            step(Input::Start, &["timer View v1 1000"], 1),
            step(vote_msg(x, Vote::Notarize(p)), &[], 1),
            step(vote_msg(x, Vote::Notarize(q.clone())), &[&evidence], 1),
            // Further conflicting votes are dropped: no new evidence, no growth.
            step(vote_msg(x, Vote::Notarize(third)), &[], 1),
            step(vote_msg(x, Vote::Finalize(q)), &[], 1),
        ],
    );
}

#[test]
fn a_restarted_validator_resends_its_vote_and_never_signs_another() {
    let l = leader(1);
    let me = others(l)[0];
    let p = proposal(1);
    let mut other = p.clone();
    other.payload = Hash([4; 32]);
    let before = signed(me, Vote::Notarize(p));
    let mut app = ScriptedApp {
        valid: true,
        verified: vec![],
    };
    let recovered = Recovered {
        signed: vec![before],
        finalization: None,
    };
    run(
        "restart",
        engine(me, recovered),
        &mut app,
        vec![
            step(
                Input::Start,
                &[&format!("send notarize v1 by {me}"), "timer View v1 1000"],
                1,
            ),
            // The leader (equivocating) shows a different proposal: we do
            // not sign it; only pass the leader's message on.
            step(
                vote_msg(l, Vote::Notarize(other)),
                &[&format!("send notarize v1 by {l}")],
                1,
            ),
        ],
    );
}

#[test]
fn a_proposal_waits_for_its_parent_certificates() {
    let me = others(leader(3))[0];
    let l3 = leader(3);
    // A proposal in view 3 on genesis needs views 1 and 2 nullified.
    let p = Proposal {
        epoch: 0,
        view: 3,
        parent_view: 0,
        parent: GENESIS,
        height: 1,
        payload: block(3, GENESIS),
    };
    let mut app = ScriptedApp {
        valid: true,
        verified: vec![],
    };
    let mut e = engine(me, Recovered::default());
    e.handle(Input::Start, &mut app);
    // The proposal arrives first: nothing to vote on yet (it is only passed on).
    let got: Vec<String> = e
        .handle(vote_msg(l3, Vote::Notarize(p.clone())), &mut app)
        .iter()
        .map(describe)
        .collect();
    assert_eq!(got, vec![format!("send notarize v3 by {l3}")]);
    let null_cert = |v: View| {
        let signers: Vec<usize> = (0..4).filter(|i| *i != me).collect();
        Certificate {
            vote: nullify(v),
            signatures: signers
                .iter()
                .map(|&i| (i as u32, signed(i, nullify(v)).signature))
                .collect(),
        }
    };
    let got: Vec<String> = e
        .handle(Input::Message(Message::Certificate(null_cert(1))), &mut app)
        .iter()
        .map(describe)
        .collect();
    assert!(
        !got.iter().any(|a| a.starts_with("persist")),
        "voted without view 2's certificate: {got:?}"
    );
    assert!(app.verified.is_empty());
    assert_eq!(e.view(), 2);
    // With view 2 nullified too, the proposal's ancestry is complete.
    let got: Vec<String> = e
        .handle(Input::Message(Message::Certificate(null_cert(2))), &mut app)
        .iter()
        .map(describe)
        .collect();
    assert!(got.contains(&"persist notarize v3".to_string()), "{got:?}");
    assert_eq!(e.view(), 3);
    assert_eq!(app.verified, vec![p]);
}

#[test]
fn recovered_data_of_another_epoch_is_ignored() {
    let me = others(leader(1))[0];
    // A finalization and a vote of epoch 7, as a node would hold just
    // after an epoch change.
    let mut old = proposal(50_000);
    old.epoch = 7;
    let sigs: Vec<_> = (0..3)
        .map(|i| (i as u32, signed(i, Vote::Finalize(old.clone())).signature))
        .collect();
    let recovered = Recovered {
        signed: vec![signed(me, Vote::Nullify { epoch: 7, view: 1 })],
        finalization: Some(Certificate {
            vote: Vote::Finalize(old),
            signatures: sigs,
        }),
    };
    let mut e = engine(me, recovered);
    let mut app = ScriptedApp {
        valid: true,
        verified: vec![],
    };
    let got: Vec<String> = e
        .handle(Input::Start, &mut app)
        .iter()
        .map(describe)
        .collect();
    assert_eq!(got, vec!["timer View v1 1000".to_string()]);
    assert_eq!((e.view(), e.last_finalized()), (1, 0));
    // It still votes in view 1 of its own epoch.
    let got: Vec<String> = e
        .handle(vote_msg(leader(1), Vote::Notarize(proposal(1))), &mut app)
        .iter()
        .map(describe)
        .collect();
    assert!(got.contains(&"persist notarize v1".to_string()), "{got:?}");
}
