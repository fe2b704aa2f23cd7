//! `ringback calls show`: one call's timeline without SQL.

use anyhow::Context;
use clap::Subcommand;

use ringback::config::Config;
use ringback::store;
use ringback::store::calls::{OnKafka, Timeline};

#[derive(Subcommand)]
pub enum CallsCommand {
    /// One call's timeline: its status (Huawei) or Call Automation (ACS) events in order with
    /// their meaning, its CDR with durations and codes explained, the dead letters whose body
    /// names it, and whether each record is on Kafka yet.
    Show {
        /// A Huawei session id or icid, or an ACS call connection id, server call id or
        /// correlation id; or a phone number (E.164, `+…`): every call of that number in
        /// [--since, --until).
        id: String,
        /// For a number: from (RFC 3339; default a day ago).
        #[arg(long)]
        since: Option<chrono::DateTime<chrono::Utc>>,
        /// For a number: until (RFC 3339; default now).
        #[arg(long)]
        until: Option<chrono::DateTime<chrono::Utc>>,
        /// The timeline as one JSON object (for a number: one per line).
        #[arg(long)]
        json: bool,
    },
}

pub async fn run(config: Config, command: CallsCommand) -> anyhow::Result<()> {
    let store = store::connect(&config.database).await?;
    store.migrate().await?;
    let calls = store.calls().context("this store keeps no calls")?;
    let result = match command {
        CallsCommand::Show {
            id,
            since,
            until,
            json,
        } if is_number(&id) => {
            let until = until.unwrap_or_else(chrono::Utc::now);
            let since = since.unwrap_or(until - chrono::Duration::days(1));
            of_number(&calls, &id, since, until, json).await
        }
        CallsCommand::Show { id, json, .. } => {
            let timeline = calls.timeline(&id).await;
            match timeline {
                Ok(t) if t.is_empty() => Err(anyhow::anyhow!(
                    "nothing stored names {id} (a session id, icid, call connection id, \
                     server call id or correlation id)"
                )),
                Ok(t) if json => {
                    println!("{}", serde_json::to_string_pretty(&t)?);
                    Ok(())
                }
                Ok(t) => {
                    print!("{}", render(&t));
                    Ok(())
                }
                Err(e) => Err(e.into()),
            }
        }
    };
    store.close().await;
    result
}

/// Calls of one number shown at most.
const MOST_CALLS: usize = 20;

fn is_number(id: &str) -> bool {
    id.strip_prefix('+')
        .is_some_and(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
}

/// Every call of `number` in `[since, until)`: the calls its status events, CDRs and ACS
/// events belong to, each as its timeline.
async fn of_number(
    calls: &ringback::store::calls::Calls,
    number: &str,
    since: chrono::DateTime<chrono::Utc>,
    until: chrono::DateTime<chrono::Utc>,
    json: bool,
) -> anyhow::Result<()> {
    let found = calls
        .find(&ringback::store::calls::Find::Number {
            number: number.to_owned(),
            since,
            until,
        })
        .await?;
    let mut ids: Vec<String> = Vec::new();
    for f in found {
        let call = matches!(f.kind, "call-status" | "cdr" | "call-events");
        if let Some(id) = f.belongs_to.filter(|_| call) {
            if !ids.contains(&id) {
                ids.push(id);
            }
        }
    }
    if ids.is_empty() {
        anyhow::bail!("no call of {number} between {since} and {until}");
    }
    if ids.len() > MOST_CALLS {
        eprintln!(
            "{} calls of {number}; the first {MOST_CALLS} (narrow --since/--until for the rest)",
            ids.len()
        );
        ids.truncate(MOST_CALLS);
    }
    for id in ids {
        let t = calls.timeline(&id).await?;
        if json {
            println!("{}", serde_json::to_string(&t)?);
        } else {
            println!("{}", render(&t));
        }
    }
    Ok(())
}

fn kafka(state: OnKafka) -> &'static str {
    match state {
        OnKafka::Published => "on Kafka",
        OnKafka::Pending => "NOT on Kafka yet (in the outbox)",
        OnKafka::Failed => "NEVER on Kafka (failed, see /readyz)",
    }
}

fn time(t: chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// The timeline as an operator reads it.
fn render(t: &Timeline) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "call {}{}",
        t.id,
        t.session_id
            .as_ref()
            .filter(|s| **s != t.id)
            .map(|s| format!(" (session {s})"))
            .unwrap_or_default()
    );
    let _ = writeln!(out, "\nevents ({}):", t.events.len());
    for e in &t.events {
        let detail: Vec<String> = e
            .detail
            .iter()
            .map(|(k, v)| match v {
                serde_json::Value::String(s) => format!("{k} {s}"),
                other => format!("{k} {other}"),
            })
            .collect();
        let _ = writeln!(
            out,
            "  {}  {:<44} {}  [{}; {}]",
            time(e.occurred_at),
            e.event_type,
            detail.join(", "),
            e.source,
            kafka(e.kafka)
        );
    }
    let _ = writeln!(out, "\nCDR ({}):", t.cdrs.len());
    for c in &t.cdrs {
        let _ = writeln!(
            out,
            "  {} -> {}  {}  started {}  answered {}  ended {}",
            c.caller_num,
            c.callee_num,
            if c.answered {
                "answered"
            } else {
                "not answered"
            },
            c.started_at.map_or("-".into(), time),
            c.answered_at.map_or("-".into(), time),
            c.ended_at.map_or("-".into(), time),
        );
        let _ = writeln!(
            out,
            "    ring {} s, talk {} s, billable {} min; icid {}  [{}; {}]",
            c.ring_seconds.map_or("-".into(), |v| v.to_string()),
            c.talk_seconds.map_or("-".into(), |v| v.to_string()),
            c.billable_minutes.map_or("-".into(), |v| v.to_string()),
            c.icid.as_deref().unwrap_or("-"),
            c.source,
            kafka(c.kafka)
        );
        for (what, code, meaning) in [
            ("release point", c.ul_fail_reason, &c.ul_fail_reason_meaning),
            (
                "forwarded leg unanswered",
                c.fwd_unasw_rsn,
                &c.fwd_unasw_rsn_meaning,
            ),
            (
                "call-out leg unanswered",
                c.call_out_unasw_rsn,
                &c.call_out_unasw_rsn_meaning,
            ),
        ] {
            if let Some(code) = code {
                let _ = writeln!(
                    out,
                    "    {what}: {code} ({})",
                    meaning.as_deref().unwrap_or("no published meaning")
                );
            }
        }
    }
    let _ = writeln!(out, "\ndead letters ({}):", t.dead_letters.len());
    for l in &t.dead_letters {
        let _ = writeln!(
            out,
            "  {}  {}  {}{}: {}  (request {}; ringback dead-letters show {})",
            time(l.received_at),
            l.source,
            l.code,
            l.field
                .as_deref()
                .map(|f| format!(" at {f}"))
                .unwrap_or_default(),
            l.detail,
            l.request_id.as_deref().unwrap_or("-"),
            l.id
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::is_number;

    #[test]
    fn numbers_are_told_from_call_ids() {
        assert!(is_number("+8613800000022"));
        assert!(!is_number(
            "1201_612_1_0_20261205045817@callenabler245.huaweicaas.com"
        ));
        assert!(!is_number("421f3500-f5de-4c12-bf61-9e2641433687"));
        assert!(!is_number("+"));
        assert!(!is_number("+86-138"));
    }
}
