//! Ironic's root device hints (`properties.root_device`,
//! `instance_info.root_device`) and the oslo.utils `specs_matcher` operators
//! they are written in, as ironic-lib parses and matches them:
//! a bare value means `s==` for strings and `==` for the size (GiB);
//! strings compare lowercased; `=` on numbers means "at least" (oslo's
//! legacy meaning).

use super::DeployError;
use crate::hardware::disks::BlockDevice;
use serde_json::{Map, Value};

/// One comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    /// `=` (legacy: numeric >=), `==`, `!=`, `<=`, `<`, `>=`, `>`.
    Num(&'static str),
    /// `s==`, `s!=`, `s<=`, `s<`, `s>=`, `s>`.
    Str(&'static str),
    /// `<in>`: the value contains the operand.
    In,
    /// `<all-in>`: the value contains every operand.
    AllIn,
    /// `<or>`: equal to one of the operands.
    Or,
    /// `<range-in> [ a b ]`: numeric range, `[`/`(` inclusive/exclusive.
    RangeIn,
}

/// The operators spelled as words.
const WORD_OPS: &[(&str, Op)] = &[
    ("<range-in>", Op::RangeIn),
    ("<all-in>", Op::AllIn),
    ("<or>", Op::Or),
    ("<in>", Op::In),
];

/// The comparisons, longest first so `<=` is not read as `<` nor `==` as
/// `=`. With an `s` in front (`s==`) they compare as strings, else as numbers.
const COMPARISONS: &[&str] = &["==", "!=", "<=", ">=", "<", ">", "="];

/// The operator `t` starts with, and the rest of `t`.
fn split_op(t: &str) -> Option<(Op, &str)> {
    if let Some((op, rest)) = WORD_OPS
        .iter()
        .find_map(|(w, op)| t.strip_prefix(w).map(|rest| (*op, rest)))
    {
        return Some((op, rest));
    }
    let (string, t) = match t.strip_prefix('s') {
        Some(after) if COMPARISONS.iter().any(|c| after.starts_with(c)) => (true, after),
        _ => (false, t),
    };
    let c: &'static str = COMPARISONS.iter().find(|c| t.starts_with(**c))?;
    // `s=` is not an operator (oslo has no string `=`).
    if string && c == "=" {
        return None;
    }
    let op = if string { Op::Str(c) } else { Op::Num(c) };
    Some((op, &t[c.len()..]))
}

/// An operator and its operands.
#[derive(Debug, Clone, PartialEq)]
struct Expr {
    op: Op,
    args: Vec<String>,
}

/// The hint names Ironic accepts (plus `tran`, which IPA matches too).
const STRING_HINTS: &[&str] = &[
    "model",
    "wwn",
    "serial",
    "vendor",
    "wwn_with_extension",
    "wwn_vendor_extension",
    "name",
    "hctl",
    "by_path",
    "tran",
];

/// Parsed hints: every one must match.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Hints {
    size: Option<Expr>,
    rotational: Option<bool>,
    strings: Vec<(&'static str, Expr)>,
}

impl Hints {
    /// Parses a `root_device` object; unknown names and bad values are
    /// errors, as in Ironic.
    pub fn parse(obj: &Map<String, Value>) -> Result<Hints, DeployError> {
        let mut h = Hints::default();
        for (name, v) in obj {
            let bad = |why: &str| {
                DeployError::InvalidParams(format!("root device hint \"{name}\": {why}"))
            };
            if name == "size" {
                let e = parse_expr(
                    &scalar(v).ok_or_else(|| bad("not a number"))?,
                    Op::Num("=="),
                );
                check_size(&e).map_err(|w| bad(&w))?;
                h.size = Some(e);
            } else if name == "rotational" {
                h.rotational = Some(parse_bool(v).ok_or_else(|| bad("not a Boolean"))?);
            } else if let Some(n) = STRING_HINTS.iter().find(|n| **n == name) {
                let s = v.as_str().ok_or_else(|| bad("not a string"))?;
                if s.trim().is_empty() {
                    return Err(bad("empty expression"));
                }
                h.strings.push((n, parse_expr(s, Op::Str("=="))));
            } else {
                return Err(bad(&format!(
                    "unknown hint; valid hints are size, rotational, {}",
                    STRING_HINTS.join(", ")
                )));
            }
        }
        Ok(h)
    }

    /// Whether there is no hint at all.
    pub fn is_empty(&self) -> bool {
        self.size.is_none() && self.rotational.is_none() && self.strings.is_empty()
    }

    /// Whether `d` satisfies every hint.
    pub fn matches(&self, d: &BlockDevice) -> bool {
        if let Some(r) = self.rotational
            && d.rotational != r
        {
            return false;
        }
        if let Some(e) = &self.size
            && !eval(e, &format_gib(d.size))
        {
            return false;
        }
        self.strings
            .iter()
            .all(|(name, e)| match device_string(d, name) {
                Some(v) => eval(e, &v.trim().to_lowercase()),
                None => false,
            })
    }
}

/// A device size in GiB as ironic-lib compares it (a float).
fn format_gib(bytes: u64) -> String {
    (bytes as f64 / (1u64 << 30) as f64).to_string()
}

fn device_string(d: &BlockDevice, name: &str) -> Option<String> {
    let v = match name {
        "model" => d.model.clone(),
        "wwn" => d.wwn.clone(),
        "serial" => d.serial.clone(),
        "vendor" => d.vendor.clone(),
        "wwn_with_extension" => d.wwn_with_extension.clone(),
        "wwn_vendor_extension" => d.wwn_vendor_extension.clone(),
        "name" => Some(d.name.clone()),
        "hctl" => d.hctl.clone(),
        "by_path" => d.by_path.clone(),
        "tran" => d.tran.clone(),
        _ => None,
    };
    v.filter(|s| !s.trim().is_empty())
}

fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// oslo's strict `bool_from_string`.
fn parse_bool(v: &Value) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(*b),
        Value::Number(n) => match n.as_i64() {
            Some(1) => Some(true),
            Some(0) => Some(false),
            _ => None,
        },
        Value::String(s) => match s.trim().to_lowercase().as_str() {
            "1" | "t" | "true" | "on" | "y" | "yes" => Some(true),
            "0" | "f" | "false" | "off" | "n" | "no" => Some(false),
            _ => None,
        },
        _ => None,
    }
}

/// Sizes must be positive integers (a range's bounds are numbers).
fn check_size(e: &Expr) -> Result<(), String> {
    if e.op == Op::RangeIn {
        return range_bounds(&e.args)
            .map(|_| ())
            .ok_or("malformed <range-in>".into());
    }
    for a in &e.args {
        match a.parse::<i64>() {
            Ok(n) if n > 0 => {}
            Ok(_) => return Err(format!("should be a positive integer, not {a}")),
            Err(_) => return Err(format!("not an integer: {a}")),
        }
    }
    Ok(())
}

/// `[op] value…`, lowercased; a bare value gets `default`.
fn parse_expr(text: &str, default: Op) -> Expr {
    let t = text.trim().to_lowercase();
    if let Some((op, rest)) = split_op(&t) {
        let args = match op {
            Op::Or => rest
                .split("<or>")
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect(),
            Op::AllIn | Op::RangeIn => rest.split_whitespace().map(str::to_string).collect(),
            _ => vec![rest.trim().to_string()],
        };
        return Expr { op, args };
    }
    Expr {
        op: default,
        args: vec![t],
    }
}

fn eval(e: &Expr, value: &str) -> bool {
    let first = e.args.first().map(String::as_str).unwrap_or("");
    match e.op {
        Op::Num(op) => match (value.parse::<f64>(), first.parse::<f64>()) {
            (Ok(x), Ok(y)) => cmp_num(op, x, y),
            _ => false,
        },
        Op::Str(op) => cmp_str(op, value, first),
        Op::In => value.contains(first),
        Op::AllIn => e.args.iter().all(|a| value.contains(a.as_str())),
        Op::Or => e.args.iter().any(|a| a == value),
        Op::RangeIn => match (range_bounds(&e.args), value.parse::<f64>()) {
            (Some((lo_inc, lo, hi, hi_inc)), Ok(x)) => {
                (if lo_inc { x >= lo } else { x > lo }) && (if hi_inc { x <= hi } else { x < hi })
            }
            _ => false,
        },
    }
}

/// `[ a b ]` → (lower inclusive, a, b, upper inclusive).
fn range_bounds(args: &[String]) -> Option<(bool, f64, f64, bool)> {
    let [open, a, b, close] = args else {
        return None;
    };
    let (a, b) = (a.parse::<f64>().ok()?, b.parse::<f64>().ok()?);
    let lo = match open.as_str() {
        "[" => true,
        "(" => false,
        _ => return None,
    };
    let hi = match close.as_str() {
        "]" => true,
        ")" => false,
        _ => return None,
    };
    (a <= b).then_some((lo, a, b, hi))
}

fn cmp_num(op: &str, x: f64, y: f64) -> bool {
    match op {
        "=" | ">=" => x >= y,
        "==" => x == y,
        "!=" => x != y,
        "<=" => x <= y,
        "<" => x < y,
        ">" => x > y,
        _ => false,
    }
}

fn cmp_str(op: &str, x: &str, y: &str) -> bool {
    match op {
        "==" => x == y,
        "!=" => x != y,
        "<=" => x <= y,
        "<" => x < y,
        ">=" => x >= y,
        ">" => x > y,
        _ => false,
    }
}

/// The hints for a deploy: `instance_info.root_device`, else
/// `properties.root_device` of the node Ironic sent.
pub fn from_node(node: &Value) -> Result<Hints, DeployError> {
    let pick = |v: &Value| v.as_object().filter(|o| !o.is_empty()).cloned();
    match pick(&node["instance_info"]["root_device"])
        .or_else(|| pick(&node["properties"]["root_device"]))
    {
        Some(mut o) => {
            if let Some(Value::String(n)) = o.get("name")
                && !n.trim().starts_with("/dev/")
                && split_op(&n.trim().to_lowercase()).is_none()
            {
                let fixed = format!("/dev/{}", n.trim());
                o.insert("name".into(), Value::String(fixed));
            }
            Hints::parse(&o)
        }
        None => Ok(Hints::default()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn disk(name: &str, gib: u64) -> BlockDevice {
        BlockDevice {
            name: format!("/dev/{name}"),
            model: Some("QEMU HARDDISK".into()),
            size: gib << 30,
            rotational: true,
            wwn: Some("0x5000c500a1b2c3d4".into()),
            serial: Some("QM0001".into()),
            vendor: Some("ATA".into()),
            wwn_with_extension: None,
            wwn_vendor_extension: None,
            hctl: Some("1:0:0:0".into()),
            by_path: Some("/dev/disk/by-path/pci-0000:00:1f.2-ata-1".into()),
            logical_sectors: Some(512),
            physical_sectors: Some(512),
            tran: Some("sata".into()),
            read_only: false,
            removable: false,
            boot_medium: false,
        }
    }

    fn m(hints: Value, d: &BlockDevice) -> bool {
        Hints::parse(hints.as_object().unwrap()).unwrap().matches(d)
    }

    #[test]
    fn bare_values_mean_equality() {
        let d = disk("sda", 20);
        assert!(m(json!({"size": 20}), &d));
        assert!(m(json!({"size": "20"}), &d));
        assert!(!m(json!({"size": 19}), &d));
        assert!(m(json!({"model": "qemu harddisk"}), &d), "case-insensitive");
        assert!(!m(json!({"model": "QEMU"}), &d));
        assert!(m(
            json!({"serial": "QM0001", "vendor": "ata", "hctl": "1:0:0:0"}),
            &d
        ));
        assert!(m(
            json!({"by_path": "/dev/disk/by-path/pci-0000:00:1f.2-ata-1"}),
            &d
        ));
        assert!(m(json!({"rotational": "true", "tran": "sata"}), &d));
        assert!(!m(json!({"rotational": false}), &d));
        assert!(
            !m(json!({"wwn_with_extension": "0x1"}), &d),
            "missing value never matches"
        );
    }

    #[test]
    fn oslo_operators() {
        let d = disk("sda", 20);
        for (hint, want) in [
            (json!({"size": ">= 10"}), true),
            (json!({"size": "<= 10"}), false),
            (json!({"size": "> 20"}), false),
            (json!({"size": "< 21"}), true),
            (json!({"size": "!= 20"}), false),
            (json!({"size": "= 15"}), true),
            (json!({"size": "== 20"}), true),
            (json!({"size": "<range-in> [ 20 30 )"}), true),
            (json!({"size": "<range-in> ( 20 30 ]"}), false),
            (json!({"model": "<in> harddisk"}), true),
            (json!({"model": "<all-in> qemu disk"}), true),
            (json!({"model": "<all-in> qemu ssd"}), false),
            (json!({"serial": "<or> a <or> qm0001"}), true),
            (json!({"serial": "<or> a <or> b"}), false),
            (json!({"wwn": "s== 0x5000c500a1b2c3d4"}), true),
            (json!({"wwn": "s!= 0x5000c500a1b2c3d4"}), false),
            (json!({"name": "s>= /dev/sd"}), true),
            (json!({"name": "s< /dev/sd"}), false),
            (json!({"vendor": "s<= ata"}), true),
        ] {
            assert_eq!(m(hint.clone(), &d), want, "{hint}");
        }
    }

    #[test]
    fn bad_hints_are_clear_errors() {
        for (hint, why) in [
            (json!({"colour": "red"}), "unknown hint"),
            (json!({"size": "big"}), "not an integer"),
            (json!({"size": 0}), "positive"),
            (json!({"rotational": "maybe"}), "Boolean"),
            (json!({"model": ""}), "empty"),
            (json!({"model": 5}), "not a string"),
        ] {
            let e = Hints::parse(hint.as_object().unwrap()).unwrap_err();
            assert!(e.to_string().contains(why), "{hint}: {e}");
        }
    }

    #[test]
    fn instance_info_wins_and_name_gets_dev() {
        let node = json!({
            "instance_info": {"root_device": {"name": "sdb"}},
            "properties": {"root_device": {"name": "/dev/sda"}}
        });
        let h = from_node(&node).unwrap();
        assert!(h.matches(&disk("sdb", 8)) && !h.matches(&disk("sda", 8)));
        let node = json!({"instance_info": {}, "properties": {"root_device": {"size": 8}}});
        assert!(from_node(&node).unwrap().matches(&disk("sda", 8)));
        assert!(from_node(&json!({})).unwrap().is_empty());
    }
}
