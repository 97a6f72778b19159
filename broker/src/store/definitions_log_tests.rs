//! Tests of `definitions_log.rs`: replay, torn tails, damage, failed appends, compaction, migration, and the
//! refusal to start without definitions.

use super::*;
use crate::store::definitions::{BindingDef, ExchangeDef, QueueDef, VHostDefinitions};
use amq_protocol::types::{AMQPValue, FieldTable};

fn queue(name: &str) -> DefOp {
    let mut arguments = FieldTable::default();
    arguments.insert("x-max-priority".into(), AMQPValue::ShortShortUInt(5));
    DefOp::DeclareQueue {
        vhost: "/".into(),
        queue: QueueDef {
            name: name.into(),
            arguments,
            paused: false,
        },
    }
}

fn open(dir: &Path) -> (DefinitionsLog, Definitions) {
    DefinitionsLog::open(dir, DiskBudget::default(), &[], false).expect("open")
}

fn queue_names(defs: &Definitions) -> Vec<String> {
    defs.vhosts
        .get("/")
        .map(|v| v.queues.iter().map(|q| q.name.clone()).collect())
        .unwrap_or_default()
}

#[test]
fn changes_survive_a_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (log, defs) = open(dir.path());
    assert_eq!(defs, Definitions::default());
    log.append(&[queue("a"), queue("b")]).expect("append");
    log.append(&[DefOp::DeleteQueue {
        vhost: "/".into(),
        name: "a".into(),
    }])
    .expect("append");
    drop(log);
    let (log, defs) = open(dir.path());
    assert_eq!(queue_names(&defs), ["b"]);
    assert_eq!(log.records(), 3);
}

#[test]
fn a_torn_last_record_is_cut_off_and_the_log_goes_on() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join(LOG_FILE);
    let (log, _) = open(dir.path());
    log.append(&[queue("a")]).expect("append");
    let whole = fs::metadata(&path).expect("meta").len();
    log.append(&[queue("b")]).expect("append");
    drop(log);
    // A crash in the middle of the second record's write.
    let f = File::options().write(true).open(&path).expect("open");
    f.set_len(whole + 11).expect("cut");
    let (log, defs) = open(dir.path());
    assert_eq!(queue_names(&defs), ["a"]);
    assert_eq!(
        fs::metadata(&path).expect("meta").len(),
        whole,
        "the torn bytes are gone"
    );
    log.append(&[queue("c")]).expect("append after the cut");
    drop(log);
    // Zeros after the last record (blocks allocated before the crash) are a torn end too.
    let f = File::options().append(true).open(&path).expect("open");
    (&f).write_all(&[0u8; 64]).expect("zeros");
    let (_, defs) = open(dir.path());
    assert_eq!(queue_names(&defs), ["a", "c"]);
}

#[test]
fn a_damaged_record_with_records_after_it_refuses_to_open() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join(LOG_FILE);
    let (log, _) = open(dir.path());
    log.append(&[queue("a"), queue("b"), queue("c")]).expect("append");
    drop(log);
    let mut bytes = fs::read(&path).expect("read");
    bytes[HEADER + 3] ^= 0xff; // inside the first payload
    fs::write(&path, &bytes).expect("write");
    let err = DefinitionsLog::open(dir.path(), DiskBudget::default(), &[], false)
        .err()
        .expect("damaged");
    assert!(matches!(err, DefinitionsError::Damaged { offset: 0, .. }), "{err}");
    assert!(err.to_string().contains("checksum"), "{err}");
}

#[test]
fn a_failed_append_stores_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let budget = DiskBudget::limited(1 << 20);
    let (log, _) = DefinitionsLog::open(dir.path(), budget.clone(), &[], false).expect("open");
    log.append(&[queue("a")]).expect("append");
    budget.set_remaining(0);
    let err = log.append(&[queue("b")]).expect_err("disk full");
    assert_eq!(err.raw_os_error(), Some(28));
    budget.set_remaining(1 << 20);
    log.append(&[queue("c")]).expect("append with space");
    drop(log);
    let (_, defs) = open(dir.path());
    assert_eq!(queue_names(&defs), ["a", "c"]);
}

#[test]
fn the_log_is_compacted_when_it_outgrows_the_live_set() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (log, _) = open(dir.path());
    log.append(&[queue("kept")]).expect("append");
    let delete = || DefOp::DeleteQueue {
        vhost: "/".into(),
        name: "churn".into(),
    };
    // 1,600 records over a live set of one: past the minimum, so at least one compaction.
    for _ in 0..400 {
        log.append(&[queue("churn"), delete(), queue("churn"), delete()])
            .expect("append");
    }
    assert!(log.records() <= COMPACT_MIN_RECORDS + 2, "{} records", log.records());
    assert!(!dir.path().join("definitions.log.tmp").exists());
    drop(log);
    let (_, defs) = open(dir.path());
    assert_eq!(queue_names(&defs), ["kept"]);
}

#[test]
fn an_old_definitions_json_is_migrated_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut old = Definitions::default();
    old.vhosts.insert(
        "/".into(),
        VHostDefinitions {
            exchanges: vec![ExchangeDef {
                name: "x".into(),
                kind: "topic".into(),
                auto_delete: false,
                internal: false,
                arguments: FieldTable::default(),
            }],
            queues: vec![QueueDef {
                name: "q".into(),
                arguments: FieldTable::default(),
                paused: false,
            }],
            bindings: vec![BindingDef {
                source: "x".into(),
                destination: "q".into(),
                to_queue: true,
                routing_key: "a.#".into(),
                arguments: FieldTable::default(),
            }],
            policies: Vec::new(),
        },
    );
    let json = serde_json::to_vec_pretty(&old).expect("json");
    fs::write(dir.path().join(OLD_JSON_FILE), &json).expect("write");
    let (_, defs) = open(dir.path());
    assert_eq!(defs, old);
    assert!(!dir.path().join(OLD_JSON_FILE).exists());
    assert_eq!(fs::read(dir.path().join(MIGRATED_JSON_FILE)).expect("kept"), json);
    let (_, again) = open(dir.path());
    assert_eq!(again, old, "the second start reads the log");
}

#[test]
fn no_definitions_beside_queue_directories_is_refused_unless_forced() {
    let dir = tempfile::tempdir().expect("tempdir");
    let orphan = dir.path().join("queues").join("2f").join("71");
    let err = DefinitionsLog::open(dir.path(), DiskBudget::default(), std::slice::from_ref(&orphan), false)
        .err()
        .expect("refused");
    let text = err.to_string();
    assert!(
        text.contains(&dir.path().display().to_string()) && text.contains("--force-empty-definitions"),
        "{text}"
    );
    assert!(!dir.path().join(LOG_FILE).exists(), "nothing written");
    let (_, defs) = DefinitionsLog::open(dir.path(), DiskBudget::default(), &[orphan], true).expect("forced");
    assert_eq!(defs, Definitions::default());
    assert!(
        dir.path().join(LOG_FILE).exists(),
        "the next start has (empty) definitions"
    );
}
