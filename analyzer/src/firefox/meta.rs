//! The profile's `meta` (categories, units, the "more info" panel with the
//! run's facts and warnings) and its `libs`.

use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::json;

use super::{ns_to_ms, GECKO_PROFILE_VERSION, PROCESSED_PROFILE_VERSION};
use crate::model::redact::without_host_paths;
use crate::model::{clock_name, exit_kind_name, Profile};

/// How many warnings go into `meta.extra` before the rest are summarized.
const MAX_EXTRA_WARNINGS: usize = 200;

/// A module's entry in the profile's `libs`: how the profiler (and a
/// symbol server) names it. Its paths are its file name: the directories
/// it was in are the host's, not for a profile to share.
pub fn lib_json(lib: &crate::model::Lib) -> serde_json::Value {
    let sha = lib.sha256.to_ascii_uppercase();
    let is_hex = sha.len() >= 32 && sha.bytes().all(|b| b.is_ascii_hexdigit());
    // A breakpad id is a 32-hex-digit id plus an age; nothing looks it up
    // here (the profile is symbolicated), it only has to be well-formed.
    let breakpad_id = if is_hex {
        format!("{}0", &sha[..32])
    } else {
        "0".repeat(33)
    };
    json!({
        "name": lib.name,
        "path": lib.name,
        "debugName": lib.name,
        "debugPath": lib.name,
        "breakpadId": breakpad_id,
        "codeId": if lib.sha256.is_empty() { None } else { Some(&lib.sha256) },
        "arch": "wasm32",
    })
}

/// The end of the run: the latest thread end or sample, in ns since zero.
pub(super) fn run_end_ns(p: &Profile) -> u64 {
    p.threads
        .iter()
        .map(|t| {
            let last = t
                .samples
                .iter()
                .map(|s| s.time_ns)
                .max()
                .unwrap_or(t.start_ns);
            t.end_ns.unwrap_or(0).max(last)
        })
        .max()
        .unwrap_or(0)
}

pub(super) fn run_end_text(p: &Profile) -> String {
    match &p.meta.end {
        None => "no end record (the recorder was killed?)".to_string(),
        Some(e) => {
            let mut s = format!("{}, status {}", exit_kind_name(e.kind), e.status);
            if !e.message.is_empty() {
                s.push_str(": ");
                s.push_str(&e.message);
            }
            s
        }
    }
}

pub(super) struct Meta<'a>(pub(super) &'a Profile);

impl Serialize for Meta<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let p = self.0;
        let m = &p.meta;
        let mut map = s.serialize_map(None)?;
        map.serialize_entry(
            "categories",
            &json!([
                { "name": "Other", "color": "grey", "subcategories": ["Other"] },
                { "name": "Wasm", "color": "blue", "subcategories": ["Other"] },
                { "name": "Host", "color": "orange", "subcategories": ["Other"] },
            ]),
        )?;
        map.serialize_entry("debug", &false)?;
        map.serialize_entry(
            "extensions",
            &json!({ "length": 0, "baseURL": [], "id": [], "name": [] }),
        )?;
        // The front-end divides by the interval: never write 0.
        let interval = if m.interval_ns == 0 {
            1.0
        } else {
            ns_to_ms(m.interval_ns)
        };
        map.serialize_entry("interval", &interval)?;
        map.serialize_entry("preprocessedProfileVersion", &PROCESSED_PROFILE_VERSION)?;
        map.serialize_entry("processType", &0)?;
        map.serialize_entry("product", &m.product)?;
        map.serialize_entry(
            "sampleUnits",
            &json!({ "time": "ms", "eventDelay": "ms", "threadCPUDelta": "µs" }),
        )?;
        map.serialize_entry("startTime", &m.start_unix_ms)?;
        map.serialize_entry("symbolicated", &true)?;
        map.serialize_entry("pausedRanges", &[(); 0])?;
        map.serialize_entry("version", &GECKO_PROFILE_VERSION)?;
        map.serialize_entry("stackwalk", &1)?;
        map.serialize_entry("usesOnlyOneStackType", &true)?;
        map.serialize_entry("sourceCodeIsNotOnSearchfox", &true)?;
        map.serialize_entry("markerSchema", &marker_schema())?;
        if !m.args.is_empty() {
            map.serialize_entry("arguments", &m.args.join(" "))?;
        }
        map.serialize_entry("extra", &extra_json(p))?;
        map.end()
    }
}

fn extra_json(p: &Profile) -> serde_json::Value {
    let m = &p.meta;
    let entry = |label: &str, value: serde_json::Value, format: &str| json!({ "label": label, "format": format, "value": value });
    let lost: u64 = p.threads.iter().map(|t| t.lost).sum();
    let entries = vec![
        entry("Program", json!(m.product), "string"),
        entry("Arguments", json!(m.args.join(" ")), "string"),
        entry("Recorder", json!(m.recorder), "string"),
        entry("Clock", json!(m.clock.map_or("", clock_name)), "string"),
        entry("Interval", json!(ns_to_ms(m.interval_ns)), "milliseconds"),
        entry("Samples", json!(p.sample_count()), "integer"),
        entry("Lost samples", json!(lost), "integer"),
        // Their CPU delta is a share of a later reading (SPEC.md §2.4).
        entry(
            "Samples without their own CPU reading",
            json!(m.samples_without_cpu),
            "integer",
        ),
        entry("Run ended", json!(run_end_text(p)), "string"),
        entry(
            "Source lines",
            json!(if m.has_lines { "yes (DWARF)" } else { "no" }),
            "string",
        ),
        entry("Warnings", json!(m.warnings.len()), "integer"),
    ];
    let mut sections = vec![json!({ "label": "wrec", "entries": entries })];
    if !m.warnings.is_empty() {
        let mut w: Vec<_> = m
            .warnings
            .iter()
            .take(MAX_EXTRA_WARNINGS)
            .enumerate()
            // The paths in them are this machine's: file names only.
            .map(|(i, w)| {
                let w = without_host_paths(w);
                entry(&format!("{}", i + 1), json!(w), "string")
            })
            .collect();
        if m.warnings.len() > MAX_EXTRA_WARNINGS {
            let more = m.warnings.len() - MAX_EXTRA_WARNINGS;
            w.push(entry("…", json!(format!("{more} more")), "string"));
        }
        sections.push(json!({ "label": "Warnings", "entries": w }));
    }
    serde_json::Value::Array(sections)
}

/// The `data.type` of a request marker (`wrec serve`, SPEC.md §2.8).
pub(super) const REQUEST_MARKER: &str = "Request";

/// How the profiler shows request markers: in the marker chart and
/// table, and in the timeline's overview, with their index, method and
/// path.
fn marker_schema() -> serde_json::Value {
    json!([{
        "name": REQUEST_MARKER,
        "display": ["marker-chart", "marker-table", "timeline-overview"],
        "chartLabel": "{marker.data.method} {marker.data.path}",
        "tooltipLabel": "request {marker.data.request}: {marker.data.method} {marker.data.path}",
        "tableLabel": "request {marker.data.request}: {marker.data.method} {marker.data.path}",
        "description": "A request the server handled, from its arrival until the guest's handler returned",
        "fields": [
            { "key": "request", "label": "Request", "format": "integer" },
            { "key": "method", "label": "Method", "format": "string" },
            { "key": "path", "label": "Path", "format": "string" },
        ],
    }])
}
