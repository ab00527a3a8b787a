//! `./deploy/local/demo.sh`, README's first command, run as a user would (its output redirected to
//! a file) on the testbed of the test run: it shows the mission's own case on Alibaba Nacos 2.5.1
//! and leaves a clean log.

mod common;

use common::*;

#[test]
fn the_demo_shows_an_ineffective_delete_disabled_and_writes_a_clean_log() {
    let state = std::path::PathBuf::from(testbed_env("TESTBED_STATE"));
    let log = state.join("logs").join("demo-run.log");
    let file = std::fs::File::create(&log).expect("the demo's log");
    let status = std::process::Command::new(repo_root().join("deploy/local/demo.sh"))
        .stdout(file.try_clone().expect("log file"))
        .stderr(file)
        .status()
        .expect("run deploy/local/demo.sh");
    let bytes = std::fs::read(&log).expect("read the demo's log");
    let text = String::from_utf8_lossy(&bytes);
    assert!(
        status.success(),
        "the demo failed ({status}); its output:\n{text}"
    );
    // Every child writes through the demo's own descriptors: no hole of NUL bytes in the file.
    assert!(
        !bytes.contains(&0),
        "NUL bytes in the demo's log:\n{text:?}"
    );
    for shown in [
        "Nacos 2.5.1 (api V2)",
        "DeregisterIneffective",
        "DISABLED by",
        "Watch the instance in the Nacos console: http://127.0.0.1:",
    ] {
        assert!(
            text.contains(shown),
            "the demo does not show {shown:?}:\n{text}"
        );
    }
    // The consumer's last list (after the scale-down) holds two instances, the gone pod's not.
    let after = text
        .split("== After")
        .nth(1)
        .unwrap_or_else(|| panic!("no After section:\n{text}"));
    let gets = after
        .lines()
        .skip_while(|l| !l.contains("the consumer gets:"))
        .nth(1)
        .unwrap_or_default();
    assert_eq!(gets.split_whitespace().count(), 2, "{after}");
}
