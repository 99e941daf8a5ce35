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

fn engine_with(me: usize, cfg: Config, recovered: Recovered) -> Engine {
    let k = &keys()[me];
    Engine::new(
        cfg,
        Keypair::from_secret(k.secret_bytes()),
        set(),
        GENESIS,
        0,
        recovered,
    )
}

fn app() -> ScriptedApp {
    ScriptedApp {
        valid: true,
        verified: vec![],
    }
}

/// A certificate on `vote` signed by `signers`.
fn cert(vote: Vote, signers: &[usize]) -> Certificate {
    let mut signers = signers.to_vec();
    signers.sort_unstable();
    Certificate {
        signatures: signers
            .iter()
            .map(|&i| (i as u32, signed(i, vote.clone()).signature))
            .collect(),
        vote,
    }
}

/// The `View` timers among `actions`: (view, after_ms).
fn view_timers(actions: &[Action]) -> Vec<(View, u64)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::ScheduleTimer {
                view,
                timer: Timer::View,
                after_ms,
            } => Some((*view, *after_ms)),
            _ => None,
        })
        .collect()
}

/// Back-off: each view that ends in a nullification doubles the next
/// view's timeout (1 s, 2 s, 4 s, then the 8 s cap, never more), the
/// timer re-armed after a timeout in a capped view is capped too, and the
/// first notarization brings the timeout back to 1 s, from where it
/// doubles again.
#[test]
fn the_view_timeout_doubles_up_to_its_cap_and_resets_after_progress() {
    let me = 0;
    let mut c = cfg();
    c.skip_inactive_leader_views = 1_000; // this test is about back-off alone
    let max = c.max_view_timeout_ms;
    let mut e = engine_with(me, c, Recovered::default());
    let mut app = app();
    assert_eq!(
        view_timers(&e.handle(Input::Start, &mut app)),
        vec![(1, 1_000)]
    );
    let mut seen = vec![];
    for v in 1..=12 {
        let acts = e.handle(
            Input::Message(Message::Certificate(cert(nullify(v), &[1, 2, 3]))),
            &mut app,
        );
        assert_eq!(e.view(), v + 1);
        let timers = view_timers(&acts);
        assert_eq!(timers.len(), 1, "view {}: {timers:?}", v + 1);
        assert_eq!(timers[0].0, v + 1);
        seen.push(timers[0].1);
    }
    assert_eq!(
        seen,
        vec![2_000, 4_000, 8_000, 8_000, 8_000, 8_000, 8_000, 8_000, 8_000, 8_000, 8_000, 8_000]
    );
    assert!(seen.iter().all(|t| *t <= max));
    // A timeout in a capped view: nullify, and the re-armed timer is capped.
    let acts = e.handle(
        Input::Timer {
            view: 13,
            timer: Timer::View,
        },
        &mut app,
    );
    assert!(acts
        .iter()
        .map(describe)
        .any(|a| a == "persist nullify v13"));
    assert_eq!(view_timers(&acts), vec![(13, max)]);
    // Progress: view 13 is notarized (on genesis; 1-12 were nullified).
    let p = Proposal {
        epoch: 0,
        view: 13,
        parent_view: 0,
        parent: GENESIS,
        height: 1,
        payload: block(13, GENESIS),
    };
    let acts = e.handle(
        Input::Message(Message::Certificate(cert(Vote::Notarize(p), &[1, 2, 3]))),
        &mut app,
    );
    assert_eq!(
        view_timers(&acts),
        vec![(14, 1_000)],
        "reset after progress"
    );
    let acts = e.handle(
        Input::Message(Message::Certificate(cert(nullify(14), &[1, 2, 3]))),
        &mut app,
    );
    assert_eq!(
        view_timers(&acts),
        vec![(15, 2_000)],
        "doubling starts over"
    );
}

/// The inactive-leader skip: with `skip_inactive_leader_views` = 3, a view
/// whose leader has not been heard from in more than 3 views gets a 0 ms
/// timer (nullified at once), while views of active leaders (and our own)
/// keep the back-off timeout, and a leader that speaks again is waited for
/// again.
#[test]
fn a_leader_silent_for_many_views_is_skipped_at_once() {
    let me = 0;
    let mut c = cfg();
    c.skip_inactive_leader_views = 3;
    c.max_view_timeout_ms = 1_000; // constant timeout: only the skip varies
                                   // The silent validator: one that leads a view after the threshold.
    let silent = (1..4)
        .find(|s| (5..30).any(|v| leader(v) == *s))
        .expect("some validator leads a view in 5..30");
    let active: Vec<usize> = (1..4).filter(|i| *i != silent).collect();
    let mut e = engine_with(me, c, Recovered::default());
    let mut app = app();
    e.handle(Input::Start, &mut app);
    let (mut skipped, mut waited) = (0, 0);
    for v in 1..40 {
        let fired = e.handle(
            Input::Timer {
                view: v,
                timer: Timer::View,
            },
            &mut app,
        );
        assert!(fired
            .iter()
            .map(describe)
            .any(|a| a == format!("persist nullify v{v}")));
        // The silent validator speaks again from view 30 on.
        let mut voters = active.clone();
        if v >= 30 {
            voters.push(silent);
        }
        let mut timers = vec![];
        for &a in &voters {
            timers.extend(view_timers(&e.handle(vote_msg(a, nullify(v)), &mut app)));
        }
        assert_eq!(e.view(), v + 1);
        let next = v + 1;
        let l = leader(next);
        // Never heard from before view 30 (so inactive past view 3);
        // heard from in the view before, from then on.
        let inactive = l == silent && next > 3 && v < 30;
        let expected = if inactive { 0 } else { 1_000 };
        assert_eq!(
            timers,
            vec![(next, expected)],
            "view {next}, leader {l} (silent {silent})"
        );
        if inactive {
            skipped += 1;
        } else if l == silent && v >= 30 {
            waited += 1;
        }
    }
    assert!(skipped > 0, "no view of the silent leader was skipped");
    assert!(waited > 0, "the returning leader was never waited for");
    println!("silent leader {silent}: {skipped} views skipped, {waited} waited for after it spoke");
}

/// An application that cannot tell yet until told it is ready.
struct WaitingApp {
    ready: bool,
    asked: u32,
}

impl Application for WaitingApp {
    fn propose(&mut self, view: View, parent: Hash, _parent_height: u64) -> Option<Hash> {
        Some(block(view, parent))
    }
    fn verify(&mut self, _p: &Proposal) -> sou_consensus::Verdict {
        self.asked += 1;
        if self.ready {
            sou_consensus::Verdict::Valid
        } else {
            sou_consensus::Verdict::Later
        }
    }
}

/// `Verdict::Later` holds the vote; `Input::Wake` asks again; once the
/// application says valid, the vote is signed (once).
#[test]
fn a_later_verdict_then_a_wake_leads_to_a_vote() {
    let l = leader(1);
    let me = others(l)[0];
    let mut e = engine(me, Recovered::default());
    let mut app = WaitingApp {
        ready: false,
        asked: 0,
    };
    let texts = |acts: Vec<Action>| acts.iter().map(describe).collect::<Vec<_>>();
    texts(e.handle(Input::Start, &mut app));
    let got = texts(e.handle(vote_msg(l, Vote::Notarize(proposal(1))), &mut app));
    assert_eq!(got, vec![format!("send notarize v1 by {l}")]);
    assert_eq!(app.asked, 1);
    assert!(texts(e.handle(Input::Wake, &mut app)).is_empty());
    assert_eq!(app.asked, 2, "a wake asks again");
    app.ready = true;
    let got = texts(e.handle(Input::Wake, &mut app));
    assert_eq!(
        got,
        vec![
            "persist notarize v1".to_string(),
            format!("send notarize v1 by {me}")
        ]
    );
    assert_eq!(app.asked, 3);
    assert!(texts(e.handle(Input::Wake, &mut app)).is_empty());
    assert_eq!(app.asked, 3, "a valid proposal is not checked again");
}

/// Leaders are drawn in proportion to stake: over 100,000 views each
/// validator leads its share of views to within one percentage point,
/// and a validator without stake never leads.
#[test]
fn leaders_are_drawn_in_proportion_to_stake() {
    let stakes = [1u64, 2, 3, 4, 0];
    let keys: Vec<Keypair> = (0..stakes.len())
        .map(|i| Keypair::derive_insecure(7, &format!("w{i}")))
        .collect();
    let set = ValidatorSet::new(
        3,
        keys.iter()
            .zip(stakes)
            .map(|(k, s)| (k.public(), s))
            .collect(),
    );
    let views = 100_000u64;
    let mut led = [0u64; 5];
    for v in 1..=views {
        led[set.leader(v) as usize] += 1;
    }
    for (i, s) in stakes.iter().enumerate() {
        let share = led[i] as f64 / views as f64;
        let expected = *s as f64 / 10.0;
        assert!(
            (share - expected).abs() < 0.01,
            "validator {i} with stake {s}/10 led {share:.4} of views"
        );
    }
    assert_eq!(led[4], 0);
    // Another epoch draws another order.
    let other = ValidatorSet::new(4, set.validators.clone());
    assert!((1..=50).any(|v| other.leader(v) != set.leader(v)));
}

fn conflicting_pair() -> (SignedVote, SignedVote) {
    let p = proposal(1);
    let mut q = p.clone();
    q.payload = Hash([3; 32]);
    (signed(2, Vote::Notarize(p)), signed(2, Vote::Notarize(q)))
}

/// `Evidence::verify` accepts two conflicting votes by one validator and
/// names it; it rejects votes by different validators, votes that do not
/// conflict, a bad signature and the wrong epoch's set. `Evidence::id` is
/// the same whichever vote comes first.
#[test]
fn evidence_verifies_only_a_real_equivocation() {
    use sou_consensus::{Error, Evidence};
    let (a, b) = conflicting_pair();
    let ok = Evidence {
        first: a.clone(),
        second: b.clone(),
    };
    assert_eq!(ok.verify(&set(), NS), Ok(keys()[2].public()));

    let mut by_other = b.clone();
    by_other.signer = 3;
    by_other.signature = signed(3, b.vote.clone()).signature;
    let e = Evidence {
        first: a.clone(),
        second: by_other,
    };
    assert!(matches!(
        e.verify(&set(), NS),
        Err(Error::MalformedEvidence(_))
    ));

    let notarize_and_nullify = Evidence {
        first: a.clone(),
        second: signed(2, nullify(1)),
    };
    let same_twice = Evidence {
        first: a.clone(),
        second: a.clone(),
    };
    let mut later = proposal(2);
    later.payload = Hash([3; 32]);
    let other_views = Evidence {
        first: a.clone(),
        second: signed(2, Vote::Notarize(later)),
    };
    for e in [notarize_and_nullify, same_twice, other_views] {
        assert!(
            matches!(e.verify(&set(), NS), Err(Error::MalformedEvidence(_))),
            "{e:?}"
        );
    }

    let mut forged = b.clone();
    forged.signature.0[5] ^= 1;
    let e = Evidence {
        first: a.clone(),
        second: forged,
    };
    assert_eq!(e.verify(&set(), NS), Err(Error::BadSignature(2)));
    assert_eq!(
        ok.verify(&set(), b"another chain"),
        Err(Error::BadSignature(2))
    );
    let epoch_1 = ValidatorSet::new(1, set().validators);
    assert!(matches!(
        ok.verify(&epoch_1, NS),
        Err(Error::WrongEpoch {
            got: 0,
            expected: 1
        })
    ));

    let swapped = Evidence {
        first: b,
        second: a,
    };
    assert_eq!(ok.id(), swapped.id());
    let different = Evidence {
        first: signed(2, nullify(1)),
        second: signed(2, Vote::Finalize(proposal(1))),
    };
    assert_ne!(ok.id(), different.id());
}

/// A finality certificate checks out with nothing but the validator set;
/// it is rejected with another set, another epoch's set, too little stake,
/// a forged signature, a duplicate or unknown signer, or another
/// namespace. Stake, not head count, makes the quorum.
#[test]
fn a_finality_certificate_verifies_on_its_own() {
    use sou_consensus::Error;
    let fin = Vote::Finalize(proposal(1));
    let good = cert(fin.clone(), &[0, 1, 3]);
    assert_eq!(good.verify(&set(), NS), Ok(()));

    let strangers = ValidatorSet::new(
        0,
        (0..4)
            .map(|i| (Keypair::derive_insecure(5, &format!("x{i}")).public(), 1))
            .collect(),
    );
    assert!(matches!(
        good.verify(&strangers, NS),
        Err(Error::BadSignature(_))
    ));
    let next_epoch = ValidatorSet::new(1, set().validators);
    assert!(matches!(
        good.verify(&next_epoch, NS),
        Err(Error::WrongEpoch { .. })
    ));
    assert_eq!(
        cert(fin.clone(), &[0, 1]).verify(&set(), NS),
        Err(Error::NoQuorum { power: 2, total: 4 })
    );
    let mut forged = good.clone();
    forged.signatures[1].1 .0[0] ^= 1;
    assert_eq!(forged.verify(&set(), NS), Err(Error::BadSignature(1)));
    // Two signatures by one validator do not make a quorum of two.
    let two = cert(fin.clone(), &[0, 1]);
    let mut duplicate = two.clone();
    duplicate.signatures.push(two.signatures[1]);
    assert!(matches!(
        duplicate.verify(&set(), NS),
        Err(Error::MalformedCertificate(_))
    ));
    let mut unknown = two.clone();
    unknown.signatures.push((9, two.signatures[1].1));
    assert_eq!(unknown.verify(&set(), NS), Err(Error::UnknownSigner(9)));
    assert!(matches!(
        good.verify(&set(), b"another chain"),
        Err(Error::BadSignature(_))
    ));

    // Weighted: stakes 5, 1, 1, 1. Validators 1-3 (3 of 8) are no quorum;
    // 0 and 1 (6 of 8) are.
    let weighted = ValidatorSet::new(
        0,
        keys()
            .iter()
            .zip([5, 1, 1, 1])
            .map(|(k, s)| (k.public(), s))
            .collect(),
    );
    assert_eq!(
        cert(fin.clone(), &[1, 2, 3]).verify(&weighted, NS),
        Err(Error::NoQuorum { power: 3, total: 8 })
    );
    assert_eq!(cert(fin, &[0, 1]).verify(&weighted, NS), Ok(()));
}

/// What the engine reports as equivocation besides two notarizes: a
/// nullify and a finalize of one view, and two finalizes of different
/// proposals; a notarize followed by a nullify (a timeout after voting)
/// is allowed and reported by nobody.
#[test]
fn nullify_and_finalize_or_two_finalizes_are_evidence() {
    let l = leader(1);
    let me = others(l)[0];
    let rest: Vec<usize> = others(me).into_iter().filter(|i| *i != l).collect();
    let (x, y) = (rest[0], rest[1]);
    let p = proposal(1);
    let mut q = p.clone();
    q.payload = Hash([3; 32]);
    let mut e = engine(me, Recovered::default());
    let mut app = app();
    e.handle(Input::Start, &mut app);
    let evidence_in = |acts: Vec<Action>| -> Vec<sou_consensus::Evidence> {
        acts.into_iter()
            .filter_map(|a| match a {
                Action::Evidence(ev) => Some(ev),
                _ => None,
            })
            .collect()
    };

    // The leader: notarize (its proposal), then nullify: allowed.
    assert!(evidence_in(e.handle(vote_msg(l, Vote::Notarize(p.clone())), &mut app)).is_empty());
    assert!(evidence_in(e.handle(vote_msg(l, nullify(1)), &mut app)).is_empty());

    // x: nullify, then finalize.
    assert!(evidence_in(e.handle(vote_msg(x, nullify(1)), &mut app)).is_empty());
    let ev = evidence_in(e.handle(vote_msg(x, Vote::Finalize(p.clone())), &mut app));
    assert_eq!(ev.len(), 1);
    assert_eq!(ev[0].first.vote, nullify(1));
    assert_eq!(ev[0].second.vote, Vote::Finalize(p.clone()));
    assert_eq!(ev[0].verify(&set(), NS), Ok(keys()[x].public()));

    // y: finalize p, then finalize q.
    assert!(evidence_in(e.handle(vote_msg(y, Vote::Finalize(p.clone())), &mut app)).is_empty());
    let ev = evidence_in(e.handle(vote_msg(y, Vote::Finalize(q.clone())), &mut app));
    assert_eq!(ev.len(), 1);
    assert_eq!(ev[0].verify(&set(), NS), Ok(keys()[y].public()));
    assert_eq!(
        (ev[0].first.vote.clone(), ev[0].second.vote.clone()),
        (Vote::Finalize(p), Vote::Finalize(q))
    );
}

/// A validator that heard nothing of a view a peer has moved past gets
/// there from the peer's catch-up answer alone: the certificate that moved
/// the peer on, and the peer's own votes of the view it is in now.
#[test]
fn a_validator_that_lost_gossip_catches_up_from_a_peer() {
    let l = leader(1);
    let o = others(l);
    let (x, y) = (o[0], o[1]);
    let mut app = ScriptedApp {
        valid: true,
        verified: vec![],
    };
    let mut ahead = engine(x, Recovered::default());
    ahead.handle(Input::Start, &mut app);
    ahead.handle(vote_msg(l, Vote::Notarize(proposal(1))), &mut app);
    ahead.handle(vote_msg(o[2], Vote::Notarize(proposal(1))), &mut app);
    assert_eq!(ahead.view(), 2, "notarized view 1");
    ahead.handle(
        Input::Timer {
            view: 2,
            timer: Timer::View,
        },
        &mut app,
    );

    let mut behind = engine(y, Recovered::default());
    behind.handle(Input::Start, &mut app);
    assert_eq!(behind.view(), 1);
    let help = ahead.catch_up(behind.view());
    assert!(help
        .iter()
        .any(|m| matches!(m, Message::Vote(v) if v.signer == x as u32 && v.vote == nullify(2))));
    let mut sent = Vec::new();
    for m in help {
        sent.extend(behind.handle(Input::Message(m), &mut app));
    }
    assert_eq!(behind.view(), 2, "moved on by the relayed notarization");
    assert!(
        sent.iter()
            .any(|a| describe(a) == format!("send finalize v1 by {y}")),
        "finalizes what it learned was notarized: {:?}",
        sent.iter().map(describe).collect::<Vec<_>>()
    );
    // A peer already past view 2 is sent no votes of it.
    assert!(!ahead
        .catch_up(3)
        .iter()
        .any(|m| matches!(m, Message::Vote(_))));
    assert!(!ahead.catch_up(1).is_empty());
}
