//! Huawei VoiceCall push bodies, field for field as documented (names are case-sensitive).
//! Every field is optional here; which ones are required is decided in the conversion, so that
//! a missing field is reported by its own path.

use serde::Deserialize;
use serde_json::value::RawValue;

use crate::sources::lenient::LenientString;

/// `{"eventType": …, "statusInfo": {…}}` or `{"eventType": "fee", "feeLst": […]}`.
#[derive(Debug, Deserialize)]
pub struct Envelope<'a> {
    #[serde(rename = "eventType")]
    pub event_type: Option<String>,
    #[serde(rename = "statusInfo", borrow, default)]
    pub status_info: Option<&'a RawValue>,
    #[serde(rename = "feeLst", borrow, default)]
    pub fee_lst: Option<Vec<&'a RawValue>>,
}

/// `statusInfo.timestamp`: documented as `yyyy-MM-dd HH:mm:ss`, though the official sample's
/// comment calls it a UNIX timestamp, so an integer (seconds or milliseconds) is read too.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum Timestamp {
    Text(String),
    Epoch(i64),
}

/// CallStatusInfo.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusInfo {
    pub session_id: Option<String>,
    pub timestamp: Option<Timestamp>,
    pub caller: Option<LenientString>,
    pub called: Option<LenientString>,
    pub user_data: Option<String>,
    pub digit_info: Option<LenientString>,
    pub party_type: Option<LenientString>,
    pub state_code: Option<i64>,
    pub state_desc: Option<String>,
}

/// FeeInfo (one CDR).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FeeInfo {
    pub direction: Option<i64>,
    pub sp_id: Option<String>,
    pub app_key: Option<String>,
    pub icid: Option<String>,
    pub bind_num: Option<LenientString>,
    pub session_id: Option<String>,
    pub caller_num: Option<LenientString>,
    pub callee_num: Option<LenientString>,
    pub fwd_display_num: Option<LenientString>,
    pub fwd_dst_num: Option<LenientString>,
    pub fwd_start_time: Option<String>,
    pub fwd_alerting_time: Option<String>,
    pub fwd_answer_time: Option<String>,
    pub call_end_time: Option<String>,
    pub fwd_unasw_rsn: Option<i64>,
    pub fail_time: Option<String>,
    pub ul_fail_reason: Option<i64>,
    pub sip_status_code: Option<i64>,
    pub call_out_start_time: Option<String>,
    pub call_out_alerting_time: Option<String>,
    pub call_out_answer_time: Option<String>,
    pub call_out_unasw_rsn: Option<i64>,
    #[serde(rename = "dynIVRStartTime")]
    pub dyn_ivr_start_time: Option<String>,
    #[serde(rename = "dynIVRPath")]
    pub dyn_ivr_path: Option<String>,
    pub record_flag: Option<i64>,
    pub record_start_time: Option<String>,
    pub record_object_name: Option<String>,
    pub record_bucket_name: Option<String>,
    pub record_domain: Option<String>,
    pub record_file_download_url: Option<String>,
    pub tts_play_times: Option<i64>,
    pub tts_trans_duration: Option<i64>,
    pub service_type: Option<LenientString>,
    pub host_name: Option<String>,
    pub user_data: Option<String>,
}
