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
        /// correlation id.
        id: String,
        /// The timeline as one JSON object.
        #[arg(long)]
        json: bool,
    },
}

pub async fn run(config: Config, command: CallsCommand) -> anyhow::Result<()> {
    let store = store::connect(&config.database).await?;
    store.migrate().await?;
    let calls = store.calls().context("this store keeps no calls")?;
    let result = match command {
        CallsCommand::Show { id, json } => {
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
