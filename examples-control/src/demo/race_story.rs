//! Demo support: `bank-account --demo-race`, the lost update and the
//! overdraft of a split check-and-act, then the fix (the lesson itself is
//! [`crate::bank::race`]).

use std::time::Duration;

use serde_json::{Value, json};

use crate::bank::Cents;
use crate::bank::race::{self, Variant};

/// Runs the three variants, printing a row each when `print`. Returns the
/// figures (`{"mode": "race", "outcomes": [...]}`) and a failure if the
/// locked variant did not keep the books (it always should).
pub async fn demo_race(print: bool) -> (Value, Option<String>) {
    let (opening, amount, attempts) = (10_000i64, 3_000i64, 10usize);
    let delay = Duration::from_millis(10);
    if print {
        println!(
            "{attempts} concurrent withdrawals of $30.00 from $100.00; each awaits a 10 ms audit write between check and act\n"
        );
    }
    let mut outcomes = Vec::new();
    for variant in [Variant::LostUpdate, Variant::Overdraft, Variant::Locked] {
        let outcome = race::withdraw_race(variant, opening, attempts, amount, delay).await;
        if print {
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
    if print {
        println!(
            "\nthe fix: hold one guard from check through the await to the update (tokio::sync::Mutex),"
        );
        println!(
            "or keep the await out of the critical section (std::sync::Mutex); see src/bank/race.rs"
        );
    }
    let failure =
        (!fixed.consistent()).then(|| format!("the locked variant lost money: {fixed:?}"));
    (json!({"mode": "race", "outcomes": outcomes}), failure)
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
