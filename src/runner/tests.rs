//! The runner with paused time and an in-memory target: what it journals,
//! orders and resumes. Checks are Alertmanager alerts (held in memory, so
//! no network runs under paused time).

use super::*;
use crate::check::alert::AlertStore;
use crate::engine::{Origin, Revision};
use crate::rollback::fake::FakeAdapter;

/// 2026-11-18T10:00:00Z
const EPOCH: Millis = 1_795_514_400_000;

struct Lab {
    _dir: tempfile::TempDir,
    services: Arc<Services>,
    alerts: Arc<AlertStore>,
    def: Arc<Watch>,
}

fn lab() -> Lab {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    std::fs::write(
        p.join("rollbackd.toml"),
        "[daemon]\nwatches = [\"watches.d\"]\nstate_dir = \"state\"\nshutdown_timeout = \"1s\"\n",
    )
    .unwrap();
    std::fs::create_dir(p.join("watches.d")).unwrap();
    std::fs::write(
        p.join("watches.d/web.toml"),
        "[[watch]]\nname = \"web\"\ntarget = { kind = \"command\", rollback = [\"/bin/true\"] }\n\
         interval = \"1s\"\nfailure_threshold = 2\narm = \"always\"\nverify_for = \"3s\"\n\
         [[watch.alert]]\nlabels = { alertname = \"WebDown\" }\n",
    )
    .unwrap();
    let config = Arc::new(crate::config::load(&p.join("rollbackd.toml")).unwrap());
    let state = p.join("state");
    std::fs::create_dir_all(&state).unwrap();
    let alerts = Arc::new(AlertStore::in_memory());
    let metrics = Arc::new(Metrics::new());
    let (_tx, connections) = watch::channel(Arc::new(Connections::build(config.clone())));
    let services = Arc::new(Services {
        state_dir: state.clone(),
        journal: Mutex::new(Journal::open(&state).unwrap()),
        memory: MemoryStore::open(&state).unwrap(),
        outbox: Outbox::open(&state).unwrap(),
        checking: Checking::new(alerts.clone(), metrics.clone()),
        connections,
        redactor: Redactor::default(),
        host: "ops-1".into(),
        board: RwLock::new(BTreeMap::new()),
        metrics,
        clock: Clock::Runtime {
            epoch: EPOCH,
            start: Instant::now(),
        },
        events: tokio::sync::broadcast::channel(crate::runner::EVENTS_BACKLOG).0,
    });
    let def = Arc::new(config.watches[0].clone());
    Lab {
        _dir: dir,
        services,
        alerts,
        def,
    }
}

impl Lab {
    fn now(&self) -> Millis {
        self.services.clock.now()
    }

    fn alert(&self, status: &str) {
        let starts = crate::clock::rfc3339_millis(
            std::time::SystemTime::UNIX_EPOCH + Duration::from_millis(self.now()),
        );
        let ends = if status == "firing" {
            "0001-01-01T00:00:00Z".to_owned()
        } else {
            starts.clone()
        };
        let body = format!(
            r#"{{"version":"4","status":"{status}","receiver":"rollbackd","alerts":[{{"status":"{status}","labels":{{"alertname":"WebDown"}},"annotations":{{}},"startsAt":"{starts}","endsAt":"{ends}","fingerprint":"f1"}}]}}"#
        );
        self.alerts.apply(body.as_bytes(), self.now()).unwrap();
    }

    /// Starts a runner as a daemon start would: with what the journal
    /// says.
    fn start(&self, fake: &FakeAdapter) -> (Stop, tokio::task::JoinHandle<()>) {
        let (lines, _) = Journal::read(&self.services.state_dir).unwrap();
        let summary = journal::summaries(&lines).remove("web").unwrap_or_default();
        let runner = Runner::new(self.def.clone(), self.services.clone()).with_fake(fake.clone());

        let stop = Stop::default();
        let running = stop.clone();
        let task = tokio::spawn(runner.run(summary, Inbox::default(), running));
        (stop, task)
    }

    /// A runner whose target just rolled out `v2`, armed.
    async fn armed(&self, fake: &FakeAdapter) -> (Stop, tokio::task::JoinHandle<()>) {
        let started = self.start(fake);
        fake.deploy(rollout(self, "v2"));
        until("armed", || self.events().contains(&"armed".to_owned())).await;
        // The alert that follows starts after the revision appeared.
        tokio::time::sleep(Duration::from_millis(10)).await;
        started
    }

    /// The first journal record of `event`.
    fn record(&self, event: EventKind) -> Option<Record> {
        let (lines, _) = Journal::read(&self.services.state_dir).unwrap();
        lines.into_iter().find_map(|l| match l.entry {
            Entry::Engine(r) if r.event == event => Some(r),
            _ => None,
        })
    }

    fn events(&self) -> Vec<String> {
        let (lines, _) = Journal::read(&self.services.state_dir).unwrap();
        lines
            .iter()
            .filter_map(|l| match &l.entry {
                Entry::Engine(r) => Some(r.event.as_str().to_owned()),
                _ => None,
            })
            .collect()
    }

    fn state(&self) -> String {
        self.services.board.read().unwrap()["web"].state.clone()
    }
}

fn kinds(actions: &[Action]) -> Vec<&'static str> {
    actions
        .iter()
        .map(|a| match a {
            Action::Recheck { .. } => "recheck",
            Action::Undo(_) => "undo",
            Action::AwaitRollout { .. } => "await",
        })
        .collect()
}

async fn until(what: &str, mut cond: impl FnMut() -> bool) {
    for _ in 0..600 {
        if cond() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out waiting until {what}");
}

fn rollout(lab: &Lab, id: &str) -> Revision {
    Revision {
        id: id.into(),
        since: lab.now(),
        origin: Origin::Rollout,
        definite: false,
    }
}

#[tokio::test(start_paused = true)]
async fn a_failing_watch_is_rolled_back_once_verified_and_recovered() {
    let lab = lab();
    let fake = FakeAdapter::default();
    let (stop, task) = lab.armed(&fake).await;
    lab.alert("firing");
    until("the undo is ordered", || kinds(&fake.actions()).len() == 3).await;
    assert_eq!(kinds(&fake.actions()), ["recheck", "undo", "await"]);
    lab.alert("resolved");
    until("finished", || {
        lab.events().contains(&"rollback_finished".to_owned())
    })
    .await;
    let events = lab.events();
    let at = |e: &str| events.iter().position(|x| x == e).unwrap();
    assert!(at("decided") < at("rollback_started"));
    assert!(at("rollback_started") < at("rollback_applied"));
    assert!(at("rollback_applied") < at("verifying"));
    assert!(at("verifying") < at("rollback_finished"));
    let finished = lab.record(EventKind::RollbackFinished).unwrap();
    assert_eq!(finished.outcome, Some(crate::engine::Outcome::Recovered));
    assert_eq!(kinds(&fake.actions()).len(), 3, "one undo, no second one");
    // arm = "always": armed again at once, but inside the rollback's cooldown.
    assert_eq!(lab.state(), "cooldown");
    stop.graceful();
    task.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_restart_during_the_rollout_wait_resumes_the_undo_without_sending_it_again() {
    let lab = lab();
    let fake = FakeAdapter::default();
    let (stop, task) = lab.armed(&fake).await;
    // The rollout takes an hour: the daemon dies waiting for it.
    fake.set_rollout_delay(Duration::from_secs(3600));
    lab.alert("firing");
    until("the rollout is awaited", || {
        kinds(&fake.actions()).contains(&"await")
    })
    .await;
    stop.abandon();
    task.await.unwrap();
    assert!(
        lab.events().contains(&"rollback_applied".to_owned()),
        "{:?}",
        lab.events()
    );

    lab.alert("resolved");
    let again = FakeAdapter::default();
    let (stop, task) = lab.start(&again);
    until("finished after the restart", || {
        lab.events().contains(&"rollback_finished".to_owned())
    })
    .await;
    assert_eq!(
        kinds(&again.actions()),
        ["await"],
        "resumed: the rollout is awaited again, the undo never sent twice"
    );
    let events = lab.events();
    assert_eq!(
        events.iter().filter(|e| *e == "rollback_started").count(),
        1
    );
    assert!(events.contains(&"rollback_resumed".to_owned()));
    stop.graceful();
    task.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn an_action_stopped_before_it_answered_is_answered_as_cancelled() {
    let lab = lab();
    let fake = FakeAdapter::default();
    let (stop, task) = lab.armed(&fake).await;
    // The re-read before acting never answers.
    fake.set_delay(Duration::from_secs(3600));
    lab.alert("firing");
    until("the re-read is ordered", || !fake.actions().is_empty()).await;
    stop.abandon();
    task.await.unwrap();
    assert_eq!(kinds(&fake.actions()), ["recheck"]);
    let dropped = lab
        .record(EventKind::DecisionDropped)
        .and_then(|r| r.reason)
        .expect("the decision is dropped, not left hanging");
    assert!(dropped.contains("stopped before it answered"), "{dropped}");
    assert!(!lab.events().contains(&"rollback_started".to_owned()));
}

#[tokio::test(start_paused = true)]
async fn a_graceful_stop_lets_the_action_in_flight_answer_within_the_shutdown_timeout() {
    let lab = lab();
    let fake = FakeAdapter::default();
    let (stop, task) = lab.armed(&fake).await;
    // Each action takes half a second; the shutdown timeout is one.
    fake.set_delay(Duration::from_millis(500));
    lab.alert("firing");
    until("the re-read is ordered", || !fake.actions().is_empty()).await;
    stop.graceful();
    task.await.unwrap();
    // The re-read answered, the undo was ordered and answered; the rollout
    // wait was cut short by the timeout and is resumed at the next start.
    assert_eq!(kinds(&fake.actions()), ["recheck", "undo", "await"]);
    let events = lab.events();
    assert!(
        events.contains(&"rollback_applied".to_owned()),
        "{events:?}"
    );
    assert!(!events.contains(&"rollback_finished".to_owned()));
    let saved: Saved = match lab.services.memory.load("web").unwrap() {
        Loaded::Found(s) => s,
        _ => panic!("the memory is saved at the stop"),
    };
    assert!(matches!(saved.machine.phase, Phase::RollingOut { .. }));
}
