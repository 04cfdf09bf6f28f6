//! `--demo-race`: the lost update and the overdraft of a split
//! check-and-act, then the fix (see `examples_control::bank::race`).

use std::time::Duration;

use anyhow::bail;
use examples_control::bank::Cents;
use examples_control::bank::race::{self, Variant};
use serde_json::json;

use super::Args;

pub(super) async fn demo_race(args: &Args) -> anyhow::Result<()> {
    let (opening, amount, attempts) = (10_000i64, 3_000i64, 10usize);
    let delay = Duration::from_millis(10);
    if !args.output.json {
        println!(
            "{attempts} concurrent withdrawals of $30.00 from $100.00; each awaits a 10 ms audit write between check and act\n"
        );
    }
    let mut outcomes = Vec::new();
    for variant in [Variant::LostUpdate, Variant::Overdraft, Variant::Locked] {
        let outcome = race::withdraw_race(variant, opening, attempts, amount, delay).await;
        if !args.output.json {
            let verdict = match (outcome.consistent(), variant) {
                (true, _) => "consistent".to_owned(),
                (false, _) if outcome.closing < 0 => "OVERDRAWN".to_owned(),
                (false, _) => format!(
                    "LOST UPDATE: {} unaccounted for",
                    money(opening - outcome.paid_out - outcome.closing).trim_start_matches('-')
                ),
            };
            println!(
                "{:<12} approved {:>2}, refused {:>2}, paid out {:>8}, balance {:>8}  {verdict}",
                variant_name(variant),
                outcome.approved,
                outcome.refused,
                money(outcome.paid_out),
                money(outcome.closing)
            );
        }
        outcomes.push(outcome);
    }
    let fixed = outcomes[2];
    if args.output.json {
        println!("{}", json!({"mode": "race", "outcomes": outcomes}));
    } else {
        println!(
            "\nthe fix: hold one guard from check through the await to the update (tokio::sync::Mutex),"
        );
        println!(
            "or keep the await out of the critical section (std::sync::Mutex); see src/bank/race.rs"
        );
    }
    if !fixed.consistent() {
        bail!("the locked variant lost money: {fixed:?}");
    }
    Ok(())
}

fn variant_name(variant: Variant) -> &'static str {
    match variant {
        Variant::LostUpdate => "lost-update",
        Variant::Overdraft => "overdraft",
        Variant::Locked => "locked (fix)",
    }
}

/// Signed cents as dollars: `-$200.00`.
fn money(cents: i64) -> String {
    let sign = if cents < 0 { "-" } else { "" };
    format!("{sign}{}", Cents(cents.unsigned_abs()))
}
