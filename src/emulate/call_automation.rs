//! Call Automation's mid-call callbacks, which `ringback emulate event-grid --call-automation
//! URL` plays for each incoming call it delivers: the application "answers" the call with
//! that URL as its `callbackUri`, and Call Automation then posts the call's events to it, one
//! request each, as a JSON array of one CloudEvent (`application/json`; no validation handshake,
//! no `aeg-*` headers: these do not go through Event Grid).
//!
//! A call's script is drawn from the run's seed: connected, participants updated, a prompt
//! played (or failing), digits recognised (or not), then for some calls a transfer (accepted or
//! failed) and a recording state change, and the disconnect. The events carry the incoming
//! call's `correlationId` and `serverCallId` and a `callConnectionId` of their own, as the real
//! ones do; their content comes from the recorded samples of `tests/fixtures/acs/callautomation/`.
//!
//! Delivery: in order, one after another, a few platform seconds apart (`time_scale` shrinks
//! them). Microsoft documents no retry of a failed callback, so the emulator sends each once:
//! one not answered 2xx is lost, and the ledger says so.

use chrono::Utc;
use serde_json::{json, Value};

/// The recorded callbacks, by event type.
const SAMPLES: [(&str, &str); 11] = [
    (
        "CallConnected",
        include_str!("../../tests/fixtures/acs/callautomation/CallConnected.json"),
    ),
    (
        "ParticipantsUpdated",
        include_str!("../../tests/fixtures/acs/callautomation/ParticipantsUpdated.json"),
    ),
    (
        "PlayStarted",
        include_str!("../../tests/fixtures/acs/callautomation/PlayStarted.json"),
    ),
    (
        "PlayCompleted",
        include_str!("../../tests/fixtures/acs/callautomation/PlayCompleted.json"),
    ),
    (
        "PlayFailed",
        include_str!("../../tests/fixtures/acs/callautomation/PlayFailed.json"),
    ),
    (
        "RecognizeCompleted",
        include_str!("../../tests/fixtures/acs/callautomation/RecognizeCompleted.json"),
    ),
    (
        "RecognizeFailed",
        include_str!("../../tests/fixtures/acs/callautomation/RecognizeFailed.json"),
    ),
    (
        "CallTransferAccepted",
        include_str!("../../tests/fixtures/acs/callautomation/CallTransferAccepted.json"),
    ),
    (
        "CallTransferFailed",
        include_str!("../../tests/fixtures/acs/callautomation/CallTransferFailed.json"),
    ),
    (
        "RecordingStateChanged",
        include_str!("../../tests/fixtures/acs/callautomation/RecordingStateChanged.json"),
    ),
    (
        "CallDisconnected",
        include_str!("../../tests/fixtures/acs/callautomation/CallDisconnected.json"),
    ),
];

/// The call an incoming-call event announced, as its callbacks name it.
#[derive(Debug, Clone)]
pub struct Call {
    pub correlation_id: String,
    pub server_call_id: String,
    pub call_connection_id: String,
}

impl Call {
    /// The call announced by an `IncomingCall` event (either schema), if that is what it is.
    pub fn answering(event: &Value, rng: &mut fastrand::Rng) -> Option<Self> {
        let kind = event
            .get("eventType")
            .or_else(|| event.get("type"))
            .and_then(Value::as_str)?;
        if kind != "Microsoft.Communication.IncomingCall" {
            return None;
        }
        let data = &event["data"];
        Some(Self {
            correlation_id: data["correlationId"].as_str()?.to_owned(),
            server_call_id: data["serverCallId"].as_str()?.to_owned(),
            call_connection_id: uuid::Builder::from_random_bytes(rng.u128(..).to_le_bytes())
                .into_uuid()
                .to_string(),
        })
    }
}

/// The event types of one answered call, in the order Call Automation posts them.
pub fn script(rng: &mut fastrand::Rng) -> Vec<&'static str> {
    let mut events = vec!["CallConnected", "ParticipantsUpdated", "PlayStarted"];
    events.push(if rng.f64() < 0.9 {
        "PlayCompleted"
    } else {
        "PlayFailed"
    });
    events.push(if rng.f64() < 0.75 {
        "RecognizeCompleted"
    } else {
        "RecognizeFailed"
    });
    if rng.f64() < 0.3 {
        events.push("RecordingStateChanged");
    }
    if rng.f64() < 0.4 {
        events.push(if rng.f64() < 0.8 {
            "CallTransferAccepted"
        } else {
            "CallTransferFailed"
        });
    }
    events.push("CallDisconnected");
    events
}

/// Callback `n` of `call`, of type `name`: a one-event array, as Call Automation posts it.
pub fn callback(name: &str, call: &Call, n: usize) -> Value {
    let (_, text) = SAMPLES
        .iter()
        .find(|(kind, _)| *kind == name)
        .expect("a recorded sample of every scripted event");
    let mut events: Value = serde_json::from_str(text).expect("the fixtures are JSON");
    let event = &mut events[0];
    let connection = format!("calling/callConnections/{}", call.call_connection_id);
    event["id"] = json!(format!("{}-{n:02}", call.call_connection_id));
    event["time"] = json!(Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true));
    event["source"] = json!(connection);
    event["subject"] = json!(connection);
    let data = &mut event["data"];
    data["callConnectionId"] = json!(call.call_connection_id);
    data["serverCallId"] = json!(call.server_call_id);
    data["correlationId"] = json!(call.correlation_id);
    events
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_script_ends_in_a_disconnect_and_every_callback_names_its_call() {
        let incoming = json!({
            "type": "Microsoft.Communication.IncomingCall",
            "data": {"correlationId": "corr-1", "serverCallId": "server-1"},
        });
        let mut rng = fastrand::Rng::with_seed(7);
        let call = Call::answering(&incoming, &mut rng).unwrap();
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..200 {
            let script = script(&mut rng);
            assert_eq!(script[0], "CallConnected");
            assert_eq!(script.last(), Some(&"CallDisconnected"));
            for (n, name) in script.iter().enumerate() {
                let body = callback(name, &call, n);
                let event = &body[0];
                assert_eq!(event["type"], format!("Microsoft.Communication.{name}"));
                assert_eq!(event["data"]["correlationId"], "corr-1");
                assert_eq!(event["data"]["serverCallId"], "server-1");
                assert_eq!(event["data"]["callConnectionId"], call.call_connection_id);
                seen.insert(*name);
            }
        }
        assert_eq!(seen.len(), SAMPLES.len(), "every sample plays: {seen:?}");
        let not_a_call = json!({"type": "Microsoft.Communication.SMSReceived", "data": {}});
        assert!(Call::answering(&not_a_call, &mut rng).is_none());
    }
}
