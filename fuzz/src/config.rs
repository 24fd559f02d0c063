//! serde `config::Config`: JSON documents (raw bytes, or generated from fields with bad values
//! mixed in) are parsed, validated, serialised back (a round trip), built into a scheduler
//! that takes items, and applied to a scheduler holding items, which must keep all of them.

use crate::common::{Item, Ledger, Way};
use arbitrary::{Arbitrary, Unstructured};
use fairshare::config::Config;
use fairshare::{ClassId, ManualClock, PushOptions, Scheduler};
use serde_json::{Map, Value, json};

/// A field value, often out of range.
#[derive(Debug, Clone, Copy, Arbitrary)]
pub enum Num {
    Zero,
    Small(u8),
    Max32,
    Max64,
    Neg,
    Any(u64),
}

impl Num {
    fn json(self) -> Value {
        match self {
            Num::Zero => json!(0),
            Num::Small(n) => json!(n % 10),
            Num::Max32 => json!(u32::MAX),
            Num::Max64 => json!(u64::MAX),
            Num::Neg => json!(-1),
            Num::Any(n) => json!(n),
        }
    }
}

/// A generated document: each field is left out when `None`.
#[derive(Debug, Arbitrary)]
pub struct Doc {
    quantum: Option<Num>,
    default_weight: Option<Num>,
    max_credit_rounds: Option<Num>,
    tenant_defaults: Option<DocLimits>,
    capacity: Option<(Option<Num>, Option<Num>)>,
    shed_policy: Option<u8>,
    queue_delay: Option<(Num, Num)>,
    max_in_flight: Option<Num>,
    classes: Vec<DocClass>,
    tenant_detail: Option<bool>,
    tenants: Vec<DocTenant>,
    unknown_field: bool,
}

/// A tenant's entry: name, weight, limits, block reason.
type DocTenant = (u8, Option<Num>, Option<DocLimits>, Option<u8>);

/// Tenant limits in the file form.
#[derive(Debug, Arbitrary)]
pub struct DocLimits {
    rate: Option<(Num, Option<Num>)>,
    max_items: Option<Num>,
    max_cost: Option<Num>,
    max_in_flight: Option<Num>,
}

/// A class in the file form.
#[derive(Debug, Arbitrary)]
pub struct DocClass {
    name: u8,
    weight: Option<Num>,
    reserved_percent: Option<Num>,
    ceiling_percent: Option<Num>,
    priority: Option<Num>,
    max_in_flight: Option<Num>,
    tenant_rate: Option<(Num, Option<Num>)>,
}

fn put(m: &mut Map<String, Value>, k: &str, v: Option<Value>) {
    if let Some(v) = v {
        m.insert(k.to_string(), v);
    }
}

fn rate((per_second, burst): &(Num, Option<Num>)) -> Value {
    let mut m = Map::new();
    m.insert("per_second".into(), per_second.json());
    put(&mut m, "burst", burst.map(Num::json));
    Value::Object(m)
}

fn limits(l: &DocLimits) -> Value {
    let mut m = Map::new();
    put(&mut m, "rate", l.rate.as_ref().map(rate));
    put(&mut m, "max_items", l.max_items.map(Num::json));
    put(&mut m, "max_cost", l.max_cost.map(Num::json));
    put(&mut m, "max_in_flight", l.max_in_flight.map(Num::json));
    Value::Object(m)
}

fn block(code: u8) -> Value {
    match code % 6 {
        0 => json!("operator"),
        1 => json!("abuse"),
        2 => json!("billing"),
        3 => json!("maintenance"),
        4 => json!({ "code": code }),
        _ => json!("nonsense"),
    }
}

impl Doc {
    /// The JSON document.
    pub fn json(&self) -> Value {
        let mut m = Map::new();
        put(&mut m, "quantum", self.quantum.map(Num::json));
        put(&mut m, "default_weight", self.default_weight.map(Num::json));
        put(
            &mut m,
            "max_credit_rounds",
            self.max_credit_rounds.map(Num::json),
        );
        put(
            &mut m,
            "tenant_defaults",
            self.tenant_defaults.as_ref().map(limits),
        );
        put(
            &mut m,
            "capacity",
            self.capacity.map(|(i, c)| {
                let mut m = Map::new();
                put(&mut m, "max_items", i.map(Num::json));
                put(&mut m, "max_cost", c.map(Num::json));
                Value::Object(m)
            }),
        );
        put(
            &mut m,
            "shed_policy",
            self.shed_policy.map(|p| match p % 3 {
                0 => json!("reject_new"),
                1 => json!("evict_over_share"),
                _ => json!("drop_everything"),
            }),
        );
        put(
            &mut m,
            "queue_delay",
            self.queue_delay
                .map(|(t, i)| json!({ "target_ms": t.json(), "interval_ms": i.json() })),
        );
        put(&mut m, "max_in_flight", self.max_in_flight.map(Num::json));
        if !self.classes.is_empty() {
            let classes: Vec<Value> = self
                .classes
                .iter()
                .take(6)
                .map(|c| {
                    let mut m = Map::new();
                    m.insert("name".into(), json!(format!("c{}", c.name % 4)));
                    put(&mut m, "weight", c.weight.map(Num::json));
                    put(
                        &mut m,
                        "reserved_percent",
                        c.reserved_percent.map(Num::json),
                    );
                    put(&mut m, "ceiling_percent", c.ceiling_percent.map(Num::json));
                    put(&mut m, "priority", c.priority.map(Num::json));
                    put(&mut m, "max_in_flight", c.max_in_flight.map(Num::json));
                    put(&mut m, "tenant_rate", c.tenant_rate.as_ref().map(rate));
                    Value::Object(m)
                })
                .collect();
            m.insert("classes".into(), Value::Array(classes));
        }
        put(&mut m, "tenant_detail", self.tenant_detail.map(Value::Bool));
        if !self.tenants.is_empty() {
            let mut t = Map::new();
            for (name, weight, l, b) in self.tenants.iter().take(8) {
                let mut e = Map::new();
                put(&mut e, "weight", weight.map(Num::json));
                put(&mut e, "limits", l.as_ref().map(limits));
                put(&mut e, "blocked", b.map(block));
                t.insert(format!("t{}", name % 6), Value::Object(e));
            }
            m.insert("tenants".into(), Value::Object(t));
        }
        if self.unknown_field {
            m.insert("quantom".into(), json!(1));
        }
        Value::Object(m)
    }
}

/// Decodes and runs one input: the first byte picks raw JSON or a generated document.
pub fn run(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode % 4 == 0 {
        // Raw bytes as a document: parse errors are fine, panics are not.
        if let Ok(cfg) = serde_json::from_slice::<Config>(rest) {
            exercise(&cfg, None);
        }
        return;
    }
    let mut u = Unstructured::new(rest);
    let (Ok(first), Ok(second)) = (Doc::arbitrary(&mut u), Doc::arbitrary(&mut u)) else {
        return;
    };
    let first: Result<Config, _> = serde_json::from_value(first.json());
    let second: Option<Config> = serde_json::from_value(second.json()).ok();
    if let Ok(cfg) = first {
        exercise(&cfg, second.as_ref());
    }
}

/// Validates `cfg`, round-trips it, builds a scheduler, pushes, and applies `next` to it.
pub fn exercise(cfg: &Config, next: Option<&Config>) {
    let text = serde_json::to_string(cfg).expect("a parsed config serialises");
    let back: Config = serde_json::from_str(&text).expect("a serialised config parses");
    assert_eq!(&back, cfg, "the JSON round trip changed the config");
    let Ok(valid) = cfg.validate() else {
        return;
    };
    assert_eq!(valid.scheduler.max_in_flight(), cfg.max_in_flight);
    assert_eq!(valid.classes.len(), cfg.classes.len().max(1));
    let mut s: Scheduler<String, Item, ManualClock> = valid.build(ManualClock::new());
    let mut ledger = Ledger::default();
    for i in 0..24u8 {
        let t = i % 6;
        let class = usize::from(i) % valid.classes.len();
        let item = ledger.item(t, class);
        let id = item.id;
        let opts = PushOptions::new().with_class(ClassId::new(class as u16));
        let r = s.try_push_with(format!("t{t}"), item, opts);
        ledger.pushed(id, r);
    }
    let len = s.queue().len() + s.pending_returns();
    if let Some(v2) = next.and_then(|n| n.validate().ok()) {
        // Applying keeps every queued item, whether or not it is refused (a class with work
        // in it cannot be removed).
        let _ = v2.apply(&mut s);
        assert_eq!(
            s.queue().len() + s.pending_returns(),
            len,
            "apply lost or added items"
        );
    }
    if let Some(d) = s.dispatch() {
        ledger.back(d.item, Way::Dispatched);
        assert!(s.complete(d.ticket, u32::MAX));
    }
    for t in 0..6 {
        let key = format!("t{t}");
        for item in s.purge(&key) {
            ledger.back(item, Way::Purged);
        }
    }
    for r in s.take_returned() {
        ledger.back(r.into_inner(), Way::Returned);
    }
    ledger.assert_empty();
}
