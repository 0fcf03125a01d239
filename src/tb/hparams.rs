//! The HParams plugin's records (tensorboard/plugins/hparams/api.proto and
//! plugin_data.proto): an experiment record listing the hyperparameters and
//! metrics, and per run a session start (its hyperparameter values) and end
//! (status). Runs' final metrics are the last values of the named scalar tags.

use super::proto::Msg;
use super::writer::{now_secs, EventWriter};
use std::io;

pub const EXPERIMENT_TAG: &str = "_hparams_/experiment";
pub const SESSION_START_TAG: &str = "_hparams_/session_start_info";
pub const SESSION_END_TAG: &str = "_hparams_/session_end_info";
const PLUGIN: &str = "hparams";

/// A hyperparameter an experiment declares: name, type, and its values
/// (empty: any).
pub type HParamInfo = (String, HParamType, Vec<HValue>);

/// A hyperparameter's value.
#[derive(Debug, Clone, PartialEq)]
pub enum HValue {
    Num(f64),
    Str(String),
    Bool(bool),
}

impl HValue {
    /// google.protobuf.Value.
    fn proto(&self) -> Msg {
        match self {
            HValue::Num(x) => Msg::new().double(2, *x),
            HValue::Str(s) => Msg::new().string(3, s),
            HValue::Bool(b) => Msg::new().int(4, *b as i64),
        }
    }

    pub fn kind(&self) -> HParamType {
        match self {
            HValue::Num(_) => HParamType::Float64,
            HValue::Str(_) => HParamType::String,
            HValue::Bool(_) => HParamType::Bool,
        }
    }
}

/// api.proto `DataType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HParamType {
    String = 1,
    Bool = 2,
    Float64 = 3,
}

/// api.proto `Status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionStatus {
    Success = 1,
    Failure = 2,
    Running = 3,
}

/// HParamsPluginData with one of its `data` fields set (version 0 is the default).
fn plugin_data(field: u32, m: &Msg) -> Vec<u8> {
    Msg::new().msg(field, m).0
}

impl EventWriter {
    /// The experiment record: which hyperparameters (name, type, and for strings
    /// the values seen) and which metric tags the HParams dashboard shows.
    pub fn hparams_experiment(&mut self, hparams: &[HParamInfo], metric_tags: &[String]) -> io::Result<()> {
        let mut exp = Msg::new().double(3, now_secs());
        for (name, kind, domain) in hparams {
            let mut info = Msg::new().string(1, name).int(4, *kind as i64);
            if !domain.is_empty() {
                let mut list = Msg::new();
                for v in domain {
                    list = list.msg(1, &v.proto());
                }
                info = info.msg(5, &list);
            }
            exp = exp.msg(4, &info);
        }
        for tag in metric_tags {
            exp = exp.msg(5, &Msg::new().msg(1, &Msg::new().string(2, tag)));
        }
        self.plugin_record(EXPERIMENT_TAG, PLUGIN, &plugin_data(2, &exp))
    }

    /// A run's hyperparameter values; `group` gathers repeats of one configuration.
    pub fn hparams_session_start(&mut self, hparams: &[(String, HValue)], group: &str) -> io::Result<()> {
        let mut start = Msg::new();
        for (name, value) in hparams {
            start = start.msg(1, &Msg::new().string(1, name).msg(2, &value.proto()));
        }
        start = start.string(4, group).double(5, now_secs());
        self.plugin_record(SESSION_START_TAG, PLUGIN, &plugin_data(3, &start))
    }

    pub fn hparams_session_end(&mut self, status: SessionStatus) -> io::Result<()> {
        let end = Msg::new().int(1, status as i64).double(2, now_secs());
        self.plugin_record(SESSION_END_TAG, PLUGIN, &plugin_data(4, &end))
    }
}
