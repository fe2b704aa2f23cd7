use chrono::{DateTime, Utc};

use super::{PhoneNumber, RecordMeta};
use serde::{Deserialize, Serialize};

/// Times before this are not a CDR's (flag `TimeOutOfRange`).
static EARLIEST_TIME: std::sync::LazyLock<DateTime<Utc>> =
    std::sync::LazyLock::new(|| DateTime::from_timestamp(946_684_800, 0).unwrap_or_default());

/// A fact about a CDR's times that does not hold. The record is kept and flagged, never dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CdrFlag {
    AlertingBeforeStart,
    AnswerBeforeAlerting,
    AnswerBeforeStart,
    EndBeforeAnswer,
    EndBeforeStart,
    /// Neither an end nor a start time: stored in the default partition (1970-01-01).
    NoTime,
    /// Its time is before 2000 or more than a day after it was received: stored where that
    /// time falls, the default partition if no monthly partition holds it.
    TimeOutOfRange,
}

impl CdrFlag {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::AlertingBeforeStart => "alerting_before_start",
            Self::AnswerBeforeAlerting => "answer_before_alerting",
            Self::AnswerBeforeStart => "answer_before_start",
            Self::EndBeforeAnswer => "end_before_answer",
            Self::EndBeforeStart => "end_before_start",
            Self::NoTime => "no_time",
            Self::TimeOutOfRange => "time_out_of_range",
        }
    }
}

/// Every time a FeeInfo can carry, already parsed.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CdrTimes {
    pub fwd_start: Option<DateTime<Utc>>,
    pub fwd_alerting: Option<DateTime<Utc>>,
    pub fwd_answer: Option<DateTime<Utc>>,
    pub call_end: Option<DateTime<Utc>>,
    pub fail: Option<DateTime<Utc>>,
    pub call_out_start: Option<DateTime<Utc>>,
    pub call_out_alerting: Option<DateTime<Utc>>,
    pub call_out_answer: Option<DateTime<Utc>>,
    pub dyn_ivr_start: Option<DateTime<Utc>>,
    pub record_start: Option<DateTime<Utc>>,
}

/// Figures derived from a CDR's times, as analysts want them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CdrDerived {
    pub started_at: Option<DateTime<Utc>>,
    pub answered_at: Option<DateTime<Utc>>,
    pub ended_at: Option<DateTime<Utc>>,
    pub answered: bool,
    pub ring_seconds: Option<i32>,
    /// Post-dial delay: the billed leg's alerting time less its start.
    #[serde(default)]
    pub pdd_seconds: Option<i32>,
    pub talk_seconds: Option<i32>,
    pub billable_minutes: Option<i32>,
    pub flags: Vec<CdrFlag>,
}

impl CdrTimes {
    /// Derives the billed leg's figures.
    ///
    /// In voice callback (`serviceType` 002, or any `fwd*` time present) the billed leg is the
    /// forward leg: talk time is `callEndTime − fwdAnswerTime`, as Huawei bills it. In voice
    /// notification / verification code calls there is only the Initcall leg, so its
    /// `callOut*` times are used. Billing is per started minute.
    /// `received_at` bounds what counts as a plausible time (flags `TimeOutOfRange`).
    pub fn derive(&self, callback: bool, received_at: DateTime<Utc>) -> CdrDerived {
        let (leg_start, leg_alerting, leg_answer) = if callback {
            (self.fwd_start, self.fwd_alerting, self.fwd_answer)
        } else {
            (
                self.call_out_start,
                self.call_out_alerting,
                self.call_out_answer,
            )
        };
        let started_at = self.call_out_start.or(self.fwd_start);
        let ended_at = self.call_end.or(self.fail);
        let mut flags = Vec::new();
        let mut check = |earlier: Option<DateTime<Utc>>, later: Option<DateTime<Utc>>, flag| {
            if let (Some(a), Some(b)) = (earlier, later) {
                if b < a {
                    flags.push(flag);
                }
            }
        };
        check(leg_start, leg_alerting, CdrFlag::AlertingBeforeStart);
        check(leg_alerting, leg_answer, CdrFlag::AnswerBeforeAlerting);
        check(leg_start, leg_answer, CdrFlag::AnswerBeforeStart);
        check(leg_answer, ended_at, CdrFlag::EndBeforeAnswer);
        check(started_at, ended_at, CdrFlag::EndBeforeStart);

        let seconds = |from: Option<DateTime<Utc>>, to: Option<DateTime<Utc>>| match (from, to) {
            (Some(a), Some(b)) if b >= a => i32::try_from((b - a).num_seconds()).ok(),
            _ => None,
        };
        match ended_at.or(started_at) {
            None => flags.push(CdrFlag::NoTime),
            Some(t) if t < *EARLIEST_TIME || t > received_at + chrono::Duration::days(1) => {
                flags.push(CdrFlag::TimeOutOfRange);
            }
            Some(_) => {}
        }
        let answered = leg_answer.is_some();
        let ring_seconds = seconds(leg_alerting, leg_answer.or(ended_at));
        let talk_seconds = if answered {
            seconds(leg_answer, ended_at)
        } else {
            Some(0)
        };
        let billable_minutes = talk_seconds.map(billable_minutes);
        CdrDerived {
            started_at,
            answered_at: leg_answer,
            ended_at,
            answered,
            ring_seconds,
            pdd_seconds: seconds(leg_start, leg_alerting),
            talk_seconds,
            billable_minutes,
            flags,
        }
    }
}

/// One call detail record (`cdrs` row): every FeeInfo field, typed, plus derived figures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cdr {
    pub meta: RecordMeta,
    pub direction: i16,
    pub sp_id: String,
    pub app_key: String,
    pub icid: Option<String>,
    pub bind_num: PhoneNumber,
    pub session_id: String,
    pub caller_num: PhoneNumber,
    pub callee_num: PhoneNumber,
    pub fwd_display_num: Option<PhoneNumber>,
    pub fwd_dst_num: Option<PhoneNumber>,
    pub times: CdrTimes,
    pub fwd_unasw_rsn: Option<i32>,
    pub ul_fail_reason: Option<i32>,
    pub sip_status_code: Option<i32>,
    pub call_out_unasw_rsn: Option<i32>,
    pub dyn_ivr_path: Option<String>,
    pub record_flag: Option<i16>,
    pub record_object_name: Option<String>,
    pub record_bucket_name: Option<String>,
    pub record_domain: Option<String>,
    pub record_file_download_url: Option<String>,
    pub tts_play_times: Option<i32>,
    pub tts_trans_duration: Option<i32>,
    pub service_type: Option<String>,
    pub host_name: Option<String>,
    pub user_data: Option<String>,
    pub derived: CdrDerived,
    /// The FeeInfo object exactly as sent.
    pub raw: String,
}

impl Cdr {
    /// Dedupe key: `icid` (unique per call record) when present, else the session id (Huawei
    /// sends one CDR per call).
    pub fn dedupe_key(icid: Option<&str>, session_id: &str) -> String {
        match icid {
            Some(icid) => format!("icid:{icid}"),
            None => format!("session:{session_id}"),
        }
    }

    /// The time the CDR is stored under (`cdrs.occurred_at`, its partition): its end, else its
    /// start, else 1970-01-01 (flagged `no_time`). Never when it was received: a retry is
    /// received at another time, and must land in the partition of its first copy.
    pub fn stored_at(&self) -> DateTime<Utc> {
        self.derived
            .ended_at
            .or(self.derived.started_at)
            .unwrap_or(DateTime::UNIX_EPOCH)
    }

    /// The time the CDR describes: its end, else its start, else when it was received.
    pub fn occurred_at(&self) -> DateTime<Utc> {
        self.derived
            .ended_at
            .or(self.derived.started_at)
            .unwrap_or(self.meta.received_at)
    }
}

/// Talk seconds as whole minutes, rounded up, without `s + 59` (which overflows for a talk
/// time near `i32::MAX` seconds: the sender's times are untrusted).
fn billable_minutes(talk_seconds: i32) -> i32 {
    talk_seconds / 60 + i32::from(talk_seconds % 60 > 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::parse_platform_time;

    fn t(s: &str) -> Option<DateTime<Utc>> {
        parse_platform_time(s).unwrap()
    }

    /// When the example CDRs were received: shortly after their calls.
    fn received() -> DateTime<Utc> {
        t("2019-01-24 03:10:00").unwrap()
    }

    fn callback_example() -> CdrTimes {
        // Huawei's documented sample CDR (voice callback).
        CdrTimes {
            call_out_start: t("2019-01-24 03:04:24"),
            call_out_alerting: t("2019-01-24 03:04:27"),
            call_out_answer: t("2019-01-24 03:04:31"),
            fwd_start: t("2019-01-24 03:04:31"),
            fwd_alerting: t("2019-01-24 03:04:36"),
            fwd_answer: t("2019-01-24 03:04:38"),
            call_end: t("2019-01-24 03:04:49"),
            ..CdrTimes::default()
        }
    }

    #[test]
    fn callback_bills_the_forward_leg_per_started_minute() {
        let d = callback_example().derive(true, received());
        assert!(d.answered);
        assert_eq!(d.ring_seconds, Some(2));
        assert_eq!(d.talk_seconds, Some(11));
        assert_eq!(d.billable_minutes, Some(1));
        assert_eq!(d.started_at, t("2019-01-24 03:04:24"));
        assert_eq!(d.pdd_seconds, Some(5), "forward leg: alerting less start");
        assert!(d.flags.is_empty());
    }

    #[test]
    fn exact_minutes_are_not_rounded_up() {
        let times = CdrTimes {
            call_out_answer: t("2019-01-24 03:00:00"),
            call_end: t("2019-01-24 03:02:00"),
            ..CdrTimes::default()
        };
        let d = times.derive(false, received());
        assert_eq!((d.talk_seconds, d.billable_minutes), (Some(120), Some(2)));
        let times = CdrTimes {
            call_end: t("2019-01-24 03:02:01"),
            ..times
        };
        assert_eq!(times.derive(false, received()).billable_minutes, Some(3));
    }

    #[test]
    fn unanswered_calls_have_no_talk_time() {
        let times = CdrTimes {
            call_out_start: t("2019-01-24 03:04:24"),
            call_out_alerting: t("2019-01-24 03:04:27"),
            fail: t("2019-01-24 03:05:27"),
            ..CdrTimes::default()
        };
        let d = times.derive(false, received());
        assert!(!d.answered);
        assert_eq!(d.ring_seconds, Some(60));
        assert_eq!((d.talk_seconds, d.billable_minutes), (Some(0), Some(0)));
        assert_eq!(d.ended_at, t("2019-01-24 03:05:27"));
    }

    #[test]
    fn impossible_order_is_flagged_not_fixed() {
        let times = CdrTimes {
            call_end: t("2019-01-24 03:04:30"),
            ..callback_example()
        };
        let d = times.derive(true, received());
        assert_eq!(d.flags, vec![CdrFlag::EndBeforeAnswer]);
        assert_eq!(d.talk_seconds, None);
        assert_eq!(d.billable_minutes, None);
    }

    #[test]
    fn a_cdr_without_a_plausible_time_is_flagged() {
        let none = CdrTimes::default().derive(false, received());
        assert_eq!(none.flags, vec![CdrFlag::NoTime]);
        let future = CdrTimes {
            call_end: t("2019-01-26 03:04:30"),
            ..CdrTimes::default()
        };
        assert_eq!(
            future.derive(false, received()).flags,
            vec![CdrFlag::TimeOutOfRange]
        );
        let ancient = CdrTimes {
            call_end: t("1999-12-31 23:59:59"),
            ..CdrTimes::default()
        };
        assert_eq!(
            ancient.derive(false, received()).flags,
            vec![CdrFlag::TimeOutOfRange]
        );
        let late_by_hours = CdrTimes {
            call_end: t("2019-01-24 20:00:00"),
            ..CdrTimes::default()
        };
        assert!(late_by_hours.derive(false, received()).flags.is_empty());
    }

    #[test]
    fn billable_minutes_round_up_without_overflow() {
        assert_eq!(super::billable_minutes(0), 0);
        assert_eq!(super::billable_minutes(1), 1);
        assert_eq!(super::billable_minutes(60), 1);
        assert_eq!(super::billable_minutes(61), 2);
        assert_eq!(super::billable_minutes(i32::MAX), i32::MAX / 60 + 1);
    }
}
