//! Every binary in the workspace behaves like a well-mannered CLI.

use std::time::Duration;

use e2e::{bin_names, run};

const LIMIT: Duration = Duration::from_secs(60);

/// `--help` exits 0 and names the seed example it ports (or says it is a
/// workspace tool). The list comes from `cargo metadata`, so a new binary is
/// checked without anyone remembering to add it here.
#[tokio::test]
async fn every_binary_answers_help() {
    let names = bin_names();
    assert!(names.contains(&"sandbox-server"), "{names:?}");
    for name in names {
        let output = run(name, &["--help"], LIMIT).await.unwrap();
        output.assert_code(0);
        assert!(
            output.stdout.contains("Usage:"),
            "{name} --help printed no usage:\n{}",
            output.stdout
        );
    }
}

/// An unknown flag is a usage error: exit 2, a message on stderr, no panic.
#[tokio::test]
async fn every_binary_rejects_an_unknown_flag() {
    for name in bin_names() {
        let output = run(name, &["--no-such-flag"], LIMIT).await.unwrap();
        output.assert_code(2);
        assert!(
            output.stderr.contains("error:"),
            "{name}: {}",
            output.stderr
        );
        assert!(
            !output.stderr.contains("panicked"),
            "{name}: {}",
            output.stderr
        );
    }
}
