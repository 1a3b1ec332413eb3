//! The trace generator: a pure function from (topology, seed, start, window,
//! trace count) to OTLP export requests.
//!
//! # Determinism
//!
//! Trace `i` is generated from its own ChaCha8 stream (`seed`, stream `i`), so
//! its content depends only on the inputs and `i`, never on how traces are
//! batched into requests. Random numbers come straight from the stream
//! (`next_u64`), not from `rand` distributions whose algorithms may change
//! between versions; transcendental functions (`ln`, `exp`, `cos`, `tanh`) come
//! from the platform's libm, so bytes are identical across runs and builds on
//! one platform, and may differ in the last bit of a latency across platforms.
//!
//! # Realism model
//!
//! * A trace starts at a root route drawn by `tracesPerHour`; trace `i` of `n`
//!   starts at `start + (i + u) · window / n`, `u` uniform in [0, 1): uniform
//!   over the window, in arrival order.
//! * Every route visit is a SERVER span on a random instance of its service.
//!   Each downstream call is a CLIENT span on the caller (named after the callee
//!   route, with `http.*`/`url.*`/`server.address`/`peer.service` and, for gRPC
//!   services, `rpc.*` attributes) whose only child is the callee's SERVER span.
//! * A route's calls run in file order, grouped into stages: each call either
//!   joins the previous call's stage (parallel, launched a few µs apart) or
//!   starts a new stage (sequential). The grouping is a fixed function of the
//!   route's name, so a route always has the same shape.
//! * Routes of services that plausibly own a store get a leaf database CLIENT
//!   span (`db.system`, `db.statement`, …): carts and sessions talk to Redis,
//!   catalogs, orders, payments and users to PostgreSQL, and some other leaf
//!   routes (chosen by a hash of their name) to PostgreSQL too. Reads run
//!   before the downstream calls, writes after them.
//! * Latency: every server span does some own work (log-normal, median 20 % of
//!   `maxLatencyMillis` for routes without calls, 5 % otherwise), split before
//!   and after its children. Its natural length `x` is own work plus its
//!   stages; its duration is `max · tanh(x / max)`: about `x` when `x` is
//!   small, never above `maxLatencyMillis`, with a long tail that bends
//!   smoothly towards the limit instead of piling up at it. When a parent is
//!   shorter than its children's natural lengths, the whole subtree is scaled
//!   down, so children always lie within their parents.
//! * A client span outlasts the server span it wraps by a network round trip
//!   (log-normal, median 0.3 ms, below [`MAX_NETWORK_NANOS`]). Hence a SERVER
//!   span never exceeds its route's `maxLatencyMillis`, and a CLIENT span never
//!   exceeds the callee's limit by more than [`MAX_NETWORK_NANOS`].
//! * Tag sets are drawn by weight for every span: the service's tag set becomes
//!   resource attributes (with `service.name`, `service.instance.id`,
//!   `host.name`, `telemetry.sdk.*`), the route's tag set span attributes, each
//!   with its JSON type. `inherit` copies keys from the parent server span's
//!   tags (its route tags, then its own inherited keys, then its service tags).
//!   `"error": true` sets the server span's status to ERROR with a message, an
//!   `exception` event, `http.response.status_code` from the tag set's
//!   `http.status_code` (500 without it), and the calling client span fails
//!   with it.
//! * Spans are grouped into one `ResourceSpans` per resource (service instance
//!   and its tag values) per request, in order of first appearance.

use std::collections::HashMap;
use std::ops::Range;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{
    AnyValue, InstrumentationScope, KeyValue, any_value::Value,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::span::{Event, SpanKind};
use opentelemetry_proto::tonic::trace::v1::status::StatusCode;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};
use prost::Message;
use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::topology::{TagSet, TagValue, Topology};

/// The most a CLIENT span lasts longer than the SERVER span it wraps (the
/// network round trip); also the allowance of a CLIENT span over the callee
/// route's `maxLatencyMillis`.
pub const MAX_NETWORK_NANOS: i64 = 2_000_000;

const NONE: u32 = u32::MAX;
/// Keys a service tag set may inherit into its resource; more are ignored.
const MAX_INHERITED: usize = 4;
const NANOS_PER_MILLI: f64 = 1e6;
const NANOS_PER_MICRO: f64 = 1e3;
const HOURS_PER_NANO: f64 = 1.0 / 3.6e12;

const HTTP_PORT: i64 = 8080;
const GRPC_PORT: i64 = 50051;

/// W3C `sampled` plus OTLP's "is the parent remote" bits.
const FLAG_SAMPLED: u32 = 0x01;
const FLAG_HAS_IS_REMOTE: u32 = 0x100;
const FLAG_IS_REMOTE: u32 = 0x200;

const SCOPE_NAME: &str = "lighttrace-gen";
const SCOPE_VERSION: &str = "1";

const USER_AGENTS: [&str; 4] = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_4) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Safari/605.1.15",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148",
    "python-requests/2.31.0",
];

/// First octets of end users' addresses (public ranges, for realism only).
const CLIENT_FIRST_OCTETS: [u8; 8] = [24, 71, 81, 93, 98, 145, 176, 203];

/// Generates realistic traces from a [`Topology`], as OTLP export requests.
///
/// Pure and deterministic: the same topology, seed, start, window and trace
/// count give the same requests, byte for byte, for the same sequence of
/// `max_spans`; and the same traces whatever the sequence of `max_spans`.
pub struct Generator {
    model: Model,
    resources: ResourceTable,
    base_rng: ChaCha8Rng,
    start_unix_nanos: i64,
    window_nanos: i64,
    traces_total: u64,
    /// Index of the next trace to build.
    next_trace: u64,
    traces_generated: u64,
    spans_generated: u64,
    /// Spans of the request being built, with their resource.
    staged: Vec<(u32, Span)>,
    /// The spans of one trace that did not fit the previous request.
    carried: Vec<(u32, Span)>,
    /// Per `ResourceSpans` of the request being built: span count, resource.
    group_counts: Vec<usize>,
    group_resources: Vec<u32>,
    nodes: Vec<Node>,
    effective_tags: Vec<u32>,
    /// Per resource: (request number, index of its `ResourceSpans`).
    slots: Vec<(u64, u32)>,
    requests: u64,
}

impl Generator {
    /// Prepares a generator. Traces start in `[start_unix_nanos,
    /// start_unix_nanos + window_nanos)` (a negative start is taken as 0, a
    /// window below 1 ns as 1 ns). The trace count defaults to the topology's
    /// natural load over the window (the sum of `tracesPerHour`, at least 1);
    /// set it with [`Generator::with_traces`].
    pub fn new(topology: Topology, seed: u64, start_unix_nanos: i64, window_nanos: i64) -> Self {
        let window_nanos = window_nanos.max(1);
        let natural = (topology.traces_per_hour() * window_nanos as f64 * HOURS_PER_NANO).round();
        let model = Model::build(&topology);
        let resources = ResourceTable::build(&model);
        Generator {
            model,
            resources,
            base_rng: ChaCha8Rng::seed_from_u64(seed),
            start_unix_nanos: start_unix_nanos.max(0),
            window_nanos,
            traces_total: (natural as u64).max(1),
            next_trace: 0,
            traces_generated: 0,
            spans_generated: 0,
            staged: Vec::new(),
            carried: Vec::new(),
            group_counts: Vec::new(),
            group_resources: Vec::new(),
            nodes: Vec::new(),
            effective_tags: Vec::new(),
            slots: Vec::new(),
            requests: 0,
        }
    }

    /// Sets how many traces to generate in total (before generating any).
    pub fn with_traces(mut self, traces: u64) -> Self {
        self.traces_total = traces;
        self
    }

    /// How many traces this generator produces in total.
    pub fn traces_total(&self) -> u64 {
        self.traces_total
    }

    #[cfg(test)]
    pub(crate) fn start_unix_nanos(&self) -> i64 {
        self.start_unix_nanos
    }

    /// Traces handed out in requests so far.
    pub fn traces_generated(&self) -> u64 {
        self.traces_generated
    }

    /// Spans handed out in requests so far.
    pub fn spans_generated(&self) -> u64 {
        self.spans_generated
    }

    /// The next batch of whole traces, as one OTLP request of at most
    /// `max_spans` spans (more only when a single trace is larger: a trace is
    /// never split); `None` once all traces have been handed out.
    pub fn next_request(&mut self, max_spans: usize) -> Option<ExportTraceServiceRequest> {
        let max_spans = max_spans.max(1);
        // The trace that did not fit the previous request opens this one.
        std::mem::swap(&mut self.staged, &mut self.carried);
        let mut traces = u64::from(!self.staged.is_empty());
        while self.staged.len() < max_spans && self.next_trace < self.traces_total {
            let trace_start = self.staged.len();
            self.build_trace(self.next_trace);
            self.next_trace += 1;
            if trace_start > 0 && self.staged.len() > max_spans {
                self.carried.extend(self.staged.drain(trace_start..));
                break;
            }
            traces += 1;
        }
        if self.staged.is_empty() {
            return None;
        }
        self.traces_generated += traces;
        self.spans_generated += self.staged.len() as u64;
        Some(ExportTraceServiceRequest {
            resource_spans: self.group_staged(),
        })
    }

    /// Moves the staged spans into one `ResourceSpans` per resource, in order
    /// of first appearance. Counting first lets every span vector be
    /// allocated once, at its final size: allocation dominates generation.
    fn group_staged(&mut self) -> Vec<ResourceSpans> {
        self.requests += 1;
        if self.slots.len() < self.resources.resources.len() {
            self.slots.resize(self.resources.resources.len(), (0, 0));
        }
        self.group_counts.clear();
        self.group_resources.clear();
        for (resource, _) in &self.staged {
            let slot = &mut self.slots[*resource as usize];
            if slot.0 != self.requests {
                *slot = (self.requests, self.group_counts.len() as u32);
                self.group_counts.push(0);
                self.group_resources.push(*resource);
            }
            self.group_counts[slot.1 as usize] += 1;
        }
        let mut groups: Vec<ResourceSpans> = self
            .group_resources
            .iter()
            .zip(&self.group_counts)
            .map(|(&resource, &count)| ResourceSpans {
                resource: Some(self.resources.resources[resource as usize].clone()),
                scope_spans: vec![ScopeSpans {
                    scope: Some(self.model.scope.clone()),
                    spans: Vec::with_capacity(count),
                    schema_url: String::new(),
                }],
                schema_url: String::new(),
            })
            .collect();
        for (resource, span) in self.staged.drain(..) {
            let group = self.slots[resource as usize].1 as usize;
            groups[group].scope_spans[0].spans.push(span);
        }
        groups
    }

    /// Builds trace `index`, appending its spans to `self.staged`.
    fn build_trace(&mut self, index: u64) {
        let mut rng = self.base_rng.clone();
        rng.set_stream(index);
        let u = unit(&mut rng);
        let offset =
            ((index as f64 + u) * (self.window_nanos as f64 / self.traces_total as f64)) as i64;
        let start = self
            .start_unix_nanos
            .saturating_add(offset.min(self.window_nanos - 1));
        let trace_id = loop {
            let id = ((rng.next_u64() as u128) << 64) | rng.next_u64() as u128;
            if id != 0 {
                break id.to_be_bytes();
            }
        };
        let user_id = rng.next_u64();
        self.nodes.clear();
        self.effective_tags.clear();
        let mut builder = TraceBuilder {
            model: &self.model,
            resources: &mut self.resources,
            rng,
            nodes: &mut self.nodes,
            effective_tags: &mut self.effective_tags,
            out: &mut self.staged,
            trace_id,
            user_id,
        };
        let root_route =
            builder.model.root_routes[pick(&builder.model.root_weights, &mut builder.rng)];
        let root = builder.plan_server(root_route, NONE);
        let duration = (builder.nodes[root as usize].natural.floor() as i64).max(1);
        builder.emit(root, start, duration, None);
    }
}

/// The topology compiled into ready-made attributes and per-route plans.
struct Model {
    services: Vec<ServiceModel>,
    routes: Vec<RouteModel>,
    root_routes: Vec<u32>,
    root_weights: Vec<f64>,
    /// Every tag of every tag set, as an attribute; tag sets refer to ranges.
    tag_attrs: Vec<KeyValue>,
    /// Interned key of each entry of `tag_attrs`.
    tag_keys: Vec<u32>,
    /// For each entry of `tag_attrs`, the first entry equal to it, so that
    /// equal inherited values share a resource.
    canonical_tags: Vec<u32>,
    scope: InstrumentationScope,
    user_agents: Vec<KeyValue>,
    status_ok_http: KeyValue,
    status_ok_grpc: KeyValue,
}

struct ServiceModel {
    instances: u32,
    tag_sets: WeightedTagSets,
    /// Resource attributes of each instance, before tags.
    instance_attrs: Vec<Vec<KeyValue>>,
}

struct WeightedTagSets {
    sets: Vec<TagSetModel>,
    cumulative: Vec<f64>,
}

struct TagSetModel {
    attrs: Range<u32>,
    error: bool,
    status_code: Option<i64>,
    /// Interned keys to copy from the parent span's tags.
    inherit: Vec<u32>,
}

struct RouteModel {
    service: u32,
    max_nanos: f64,
    own_median_nanos: f64,
    own_sigma: f64,
    name: String,
    grpc: bool,
    /// `http.route`, `url.path`, … without the status code.
    server_attrs: Vec<KeyValue>,
    tag_sets: WeightedTagSets,
    calls: Vec<CallModel>,
    database: Option<DatabaseModel>,
    steps: Vec<Step>,
}

struct CallModel {
    callee: u32,
    name: String,
    grpc: bool,
    attrs: Vec<KeyValue>,
    callee_label: String,
}

struct DatabaseModel {
    name: String,
    attrs: Vec<KeyValue>,
    /// `Some(prefix)`: the statement is `prefix` + the trace's user id.
    per_user_statement: Option<String>,
    median_nanos: f64,
    sigma: f64,
}

#[derive(Clone, Copy)]
struct Step {
    kind: StepKind,
    /// Starts after everything before it has finished (else runs in parallel
    /// with the step before it).
    sequential: bool,
}

#[derive(Clone, Copy)]
enum StepKind {
    Call(u32),
    Database,
}

impl Model {
    fn build(topology: &Topology) -> Self {
        let mut interner = KeyInterner::default();
        let mut tag_attrs = Vec::new();
        let mut tag_keys = Vec::new();
        let mut weighted = |sets: &[TagSet]| {
            let mut cumulative = Vec::with_capacity(sets.len());
            let mut total = 0.0;
            let sets = sets
                .iter()
                .map(|set| {
                    total += set.weight;
                    cumulative.push(total);
                    let begin = tag_attrs.len() as u32;
                    let mut status_code = None;
                    for (key, value) in &set.tags {
                        if let (
                            "http.status_code" | "http.response.status_code",
                            TagValue::Int(code),
                        ) = (key.as_str(), value)
                        {
                            status_code = Some(*code);
                        }
                        tag_keys.push(interner.intern(key));
                        tag_attrs.push(tag_attr(key, value));
                    }
                    TagSetModel {
                        attrs: begin..tag_attrs.len() as u32,
                        error: set.error,
                        status_code,
                        inherit: set.inherit.iter().map(|k| interner.intern(k)).collect(),
                    }
                })
                .collect();
            WeightedTagSets { sets, cumulative }
        };

        let services: Vec<ServiceModel> = topology
            .services
            .iter()
            .map(|service| {
                let language = sdk_language(&service.name);
                let instance_attrs = service
                    .instances
                    .iter()
                    .map(|instance| {
                        vec![
                            kv_str("service.name", &service.name),
                            kv_str("service.instance.id", instance),
                            kv_str("host.name", format!("node-{}", fnv1a(instance) % 6 + 1)),
                            kv_str("telemetry.sdk.language", language),
                            kv_str("telemetry.sdk.name", "opentelemetry"),
                        ]
                    })
                    .collect();
                ServiceModel {
                    instances: service.instances.len() as u32,
                    tag_sets: weighted(&service.tag_sets),
                    instance_attrs,
                }
            })
            .collect();

        let root_services: Vec<bool> = (0..topology.services.len())
            .map(|s| {
                topology
                    .roots
                    .iter()
                    .any(|&(r, _)| topology.routes[r].service == s)
            })
            .collect();
        // Entry services speak HTTP; internal ones mostly gRPC, some HTTP.
        let service_grpc =
            |s: usize| !root_services[s] && !fnv1a(&topology.services[s].name).is_multiple_of(3);

        let routes = topology
            .routes
            .iter()
            .map(|route| {
                let service = &topology.services[route.service];
                let grpc = service_grpc(route.service);
                let method = if grpc || is_write(&route.name) {
                    "POST"
                } else {
                    "GET"
                };
                let mut server_attrs = vec![
                    kv_str("http.request.method", method),
                    kv_str("http.route", &route.name),
                    kv_str("url.path", &route.name),
                    kv_str("server.address", &service.name),
                ];
                if grpc {
                    server_attrs.extend(rpc_attrs(&service.name, &route.name));
                }
                let calls: Vec<CallModel> = route
                    .calls
                    .iter()
                    .map(|&callee| {
                        let callee_route = &topology.routes[callee];
                        let callee_service = &topology.services[callee_route.service].name;
                        let grpc = service_grpc(callee_route.service);
                        let port = if grpc { GRPC_PORT } else { HTTP_PORT };
                        let method = if grpc || is_write(&callee_route.name) {
                            "POST"
                        } else {
                            "GET"
                        };
                        let mut attrs = vec![
                            kv_str("http.request.method", method),
                            kv_str("url.path", &callee_route.name),
                            kv_str("server.address", callee_service),
                            kv_int("server.port", port),
                            kv_str("peer.service", callee_service),
                        ];
                        if grpc {
                            attrs.extend(rpc_attrs(callee_service, &callee_route.name));
                        } else {
                            attrs.push(kv_str(
                                "url.full",
                                format!("http://{callee_service}:{port}{}", callee_route.name),
                            ));
                        }
                        CallModel {
                            callee: callee as u32,
                            name: callee_route.name.clone(),
                            grpc,
                            attrs,
                            callee_label: format!("{callee_service} {}", callee_route.name),
                        }
                    })
                    .collect();
                let database = database_for(&service.name, &route.name, !calls.is_empty());
                let steps = plan_steps(&service.name, &route.name, calls.len(), database.is_some());
                let leaf = calls.is_empty();
                let max_nanos = route.max_latency_millis * NANOS_PER_MILLI;
                RouteModel {
                    service: route.service as u32,
                    max_nanos,
                    own_median_nanos: max_nanos * if leaf { 0.2 } else { 0.05 },
                    own_sigma: if leaf { 0.8 } else { 0.6 },
                    name: route.name.clone(),
                    grpc,
                    server_attrs,
                    tag_sets: weighted(&route.tag_sets),
                    calls,
                    database,
                    steps,
                }
            })
            .collect();

        let mut first_of: HashMap<Vec<u8>, u32> = HashMap::new();
        let canonical_tags = tag_attrs
            .iter()
            .enumerate()
            .map(|(id, attr)| *first_of.entry(attr.encode_to_vec()).or_insert(id as u32))
            .collect();
        Model {
            services,
            routes,
            canonical_tags,
            root_routes: topology.roots.iter().map(|&(r, _)| r as u32).collect(),
            root_weights: topology
                .roots
                .iter()
                .scan(0.0, |total, &(_, rate)| {
                    *total += rate;
                    Some(*total)
                })
                .collect(),
            tag_attrs,
            tag_keys,
            scope: InstrumentationScope {
                name: SCOPE_NAME.to_owned(),
                version: SCOPE_VERSION.to_owned(),
                ..Default::default()
            },
            user_agents: USER_AGENTS
                .iter()
                .map(|ua| kv_str("user_agent.original", *ua))
                .collect(),
            status_ok_http: kv_int("http.response.status_code", 200),
            status_ok_grpc: kv_int("rpc.grpc.status_code", 0),
        }
    }
}

/// Resources, built once per (service, instance, tag set, inherited values).
struct ResourceTable {
    resources: Vec<Resource>,
    /// For tag sets without `inherit`: resource of (service, instance, tag set).
    fixed: Vec<Vec<u32>>,
    inherited: HashMap<(u32, u32, u32, [u32; MAX_INHERITED]), u32>,
}

impl ResourceTable {
    fn build(model: &Model) -> Self {
        let mut table = ResourceTable {
            resources: Vec::new(),
            fixed: Vec::new(),
            inherited: HashMap::new(),
        };
        for (s, service) in model.services.iter().enumerate() {
            let sets = service.tag_sets.sets.len().max(1);
            let mut fixed = vec![NONE; service.instances as usize * sets];
            for instance in 0..service.instances {
                for set in 0..sets {
                    let tag_set = if service.tag_sets.sets.is_empty() {
                        NONE
                    } else {
                        set as u32
                    };
                    if tag_set != NONE && !service.tag_sets.sets[set].inherit.is_empty() {
                        continue;
                    }
                    fixed[instance as usize * sets + set] = table.resources.len() as u32;
                    let resource = resource_for(model, s as u32, instance, tag_set, &[]);
                    table.resources.push(resource);
                }
            }
            table.fixed.push(fixed);
        }
        table
    }

    fn get(
        &mut self,
        model: &Model,
        service: u32,
        instance: u32,
        tag_set: u32,
        inherited: [u32; MAX_INHERITED],
    ) -> u32 {
        let sets = model.services[service as usize].tag_sets.sets.len().max(1) as u32;
        let slot = instance * sets + if tag_set == NONE { 0 } else { tag_set };
        let fixed = self.fixed[service as usize][slot as usize];
        if fixed != NONE {
            return fixed;
        }
        let key = (service, instance, tag_set, inherited);
        if let Some(&id) = self.inherited.get(&key) {
            return id;
        }
        let id = self.resources.len() as u32;
        self.resources
            .push(resource_for(model, service, instance, tag_set, &inherited));
        self.inherited.insert(key, id);
        id
    }
}

fn resource_for(
    model: &Model,
    service: u32,
    instance: u32,
    tag_set: u32,
    inherited: &[u32],
) -> Resource {
    let service = &model.services[service as usize];
    let mut attributes = service.instance_attrs[instance as usize].clone();
    if tag_set != NONE {
        let set = &service.tag_sets.sets[tag_set as usize];
        attributes
            .extend_from_slice(&model.tag_attrs[set.attrs.start as usize..set.attrs.end as usize]);
    }
    for &id in inherited.iter().filter(|&&id| id != NONE) {
        let attr = model.tag_attrs[id as usize].clone();
        match attributes.iter_mut().find(|a| a.key == attr.key) {
            Some(existing) => *existing = attr,
            None => attributes.push(attr),
        }
    }
    Resource {
        attributes,
        ..Default::default()
    }
}

/// One span of the trace being built, before timestamps are assigned.
///
/// Lengths are in "natural" nanoseconds: what the span would take without its
/// parent's limit. `inner` is the length of the span's own time line, on which
/// its children's `offset`s lie; its actual duration scales that time line.
#[derive(Clone, Copy)]
struct Node {
    kind: NodeKind,
    first_child: u32,
    last_child: u32,
    next_sibling: u32,
    offset: f64,
    natural: f64,
    inner: f64,
    resource: u32,
    error: bool,
    status_code: i64,
}

#[derive(Clone, Copy)]
enum NodeKind {
    Server {
        route: u32,
        /// `effective_tags[tags]` are this span's tags: route tags and the
        /// keys they inherit (`span_tags` of them, which become attributes),
        /// then the service's inherited keys and tags.
        tags: (u32, u32),
        span_tags: u32,
        root: bool,
    },
    Client {
        route: u32,
        call: u32,
    },
    Database {
        route: u32,
    },
}

struct TraceBuilder<'a> {
    model: &'a Model,
    resources: &'a mut ResourceTable,
    rng: ChaCha8Rng,
    nodes: &'a mut Vec<Node>,
    effective_tags: &'a mut Vec<u32>,
    out: &'a mut Vec<(u32, Span)>,
    trace_id: [u8; 16],
    user_id: u64,
}

impl TraceBuilder<'_> {
    fn push(&mut self, kind: NodeKind, resource: u32) -> u32 {
        self.nodes.push(Node {
            kind,
            first_child: NONE,
            last_child: NONE,
            next_sibling: NONE,
            offset: 0.0,
            natural: 0.0,
            inner: 0.0,
            resource,
            error: false,
            status_code: 0,
        });
        (self.nodes.len() - 1) as u32
    }

    fn link(&mut self, parent: u32, child: u32) {
        let last = self.nodes[parent as usize].last_child;
        if last == NONE {
            self.nodes[parent as usize].first_child = child;
        } else {
            self.nodes[last as usize].next_sibling = child;
        }
        self.nodes[parent as usize].last_child = child;
    }

    /// The parent server span's tag with interned `key`, as an index into
    /// `Model::tag_attrs`.
    fn inherited(&self, parent: u32, key: u32) -> Option<u32> {
        let NodeKind::Server { tags, .. } = self.nodes.get(parent as usize)?.kind else {
            return None;
        };
        self.effective_tags[tags.0 as usize..tags.1 as usize]
            .iter()
            .copied()
            .find(|&id| self.model.tag_keys[id as usize] == key)
            .map(|id| self.model.canonical_tags[id as usize])
    }

    /// Plans a visit of `route` called from server span `parent` (or the root
    /// when `NONE`), with its whole subtree.
    fn plan_server(&mut self, route_id: u32, parent: u32) -> u32 {
        let model = self.model;
        let route = &model.routes[route_id as usize];
        let service = &model.services[route.service as usize];
        let instance = below(&mut self.rng, service.instances);
        let service_set = service.tag_sets.pick(&mut self.rng);
        let route_set = route.tag_sets.pick(&mut self.rng);

        let tags_start = self.effective_tags.len() as u32;
        let (mut error, mut status_code) = (false, 200);
        if let Some(set) = route_set.map(|s| &route.tag_sets.sets[s]) {
            self.effective_tags.extend(set.attrs.clone());
            for &key in &set.inherit {
                if let Some(id) = self.inherited(parent, key) {
                    self.effective_tags.push(id);
                }
            }
            error = set.error;
            status_code = set.status_code.unwrap_or(if error { 500 } else { 200 });
        }
        let span_tags = self.effective_tags.len() as u32 - tags_start;
        let mut inherited = [NONE; MAX_INHERITED];
        if let Some(set) = service_set.map(|s| &service.tag_sets.sets[s]) {
            for (slot, &key) in inherited.iter_mut().zip(&set.inherit) {
                if let Some(id) = self.inherited(parent, key) {
                    self.effective_tags.push(id);
                    *slot = id;
                }
            }
            self.effective_tags.extend(set.attrs.clone());
        }
        let tags = (tags_start, self.effective_tags.len() as u32);
        let resource = self.resources.get(
            model,
            route.service,
            instance,
            service_set.map_or(NONE, |s| s as u32),
            inherited,
        );
        let node = self.push(
            NodeKind::Server {
                route: route_id,
                tags,
                span_tags,
                root: parent == NONE,
            },
            resource,
        );

        let own = lognormal(&mut self.rng, route.own_median_nanos, route.own_sigma);
        let before = own * (0.3 + 0.4 * unit(&mut self.rng));
        let (mut stage_start, mut stage_end, mut stagger) = (before, before, 0.0);
        for (index, step) in route.steps.iter().enumerate() {
            if index > 0 {
                if step.sequential {
                    stage_start = stage_end + (10.0 + 90.0 * unit(&mut self.rng)) * NANOS_PER_MICRO;
                    stage_end = stage_start;
                    stagger = 0.0;
                } else {
                    stagger += (5.0 + 45.0 * unit(&mut self.rng)) * NANOS_PER_MICRO;
                }
            }
            let child = match step.kind {
                StepKind::Call(call) => self.plan_call(route_id, call, node),
                StepKind::Database => self.plan_database(route_id, node),
            };
            let child_node = &mut self.nodes[child as usize];
            child_node.offset = stage_start + stagger;
            stage_end = stage_end.max(child_node.offset + child_node.natural);
            self.link(node, child);
        }
        let inner = stage_end + (own - before);
        let node_ref = &mut self.nodes[node as usize];
        node_ref.inner = inner;
        node_ref.natural = route.max_nanos * (inner / route.max_nanos).tanh();
        node_ref.error = error;
        node_ref.status_code = status_code;
        node
    }

    fn plan_call(&mut self, route: u32, call: u32, caller: u32) -> u32 {
        let resource = self.nodes[caller as usize].resource;
        let client = self.push(NodeKind::Client { route, call }, resource);
        let callee = self.model.routes[route as usize].calls[call as usize].callee;
        let server = self.plan_server(callee, caller);
        // Just under the limit, so that rounding never pushes it over.
        let network = lognormal(&mut self.rng, 300.0 * NANOS_PER_MICRO, 0.5)
            .min(MAX_NETWORK_NANOS as f64 - 2.0);
        let outbound = network * (0.35 + 0.3 * unit(&mut self.rng));
        let server_node = self.nodes[server as usize];
        self.nodes[server as usize].offset = outbound;
        self.link(client, server);
        let client_node = &mut self.nodes[client as usize];
        client_node.natural = server_node.natural + network;
        client_node.inner = client_node.natural;
        client_node.error = server_node.error;
        client_node.status_code = server_node.status_code;
        client
    }

    fn plan_database(&mut self, route: u32, caller: u32) -> u32 {
        let resource = self.nodes[caller as usize].resource;
        let node = self.push(NodeKind::Database { route }, resource);
        let database = self.model.routes[route as usize]
            .database
            .as_ref()
            .expect("database steps exist only for routes with a database");
        let length = lognormal(&mut self.rng, database.median_nanos, database.sigma);
        let node_ref = &mut self.nodes[node as usize];
        node_ref.natural = length;
        node_ref.inner = length;
        node
    }

    fn span_id(&mut self) -> [u8; 8] {
        loop {
            let id = self.rng.next_u64();
            if id != 0 {
                return id.to_be_bytes();
            }
        }
    }

    /// Emits `node` as a span over `[start, start + duration)`, then its
    /// subtree, scaled into that interval.
    fn emit(&mut self, node_id: u32, start: i64, duration: i64, parent: Option<[u8; 8]>) {
        let span_id = self.span_id();
        let node = self.nodes[node_id as usize];
        let end = start + duration;
        let model = self.model;
        let mut span = Span {
            trace_id: self.trace_id.to_vec(),
            span_id: span_id.to_vec(),
            parent_span_id: parent.map(|p| p.to_vec()).unwrap_or_default(),
            start_time_unix_nano: start as u64,
            end_time_unix_nano: end as u64,
            ..Default::default()
        };
        match node.kind {
            NodeKind::Server {
                route,
                tags,
                span_tags,
                root,
            } => {
                let route = &model.routes[route as usize];
                span.name = route.name.clone();
                span.kind = SpanKind::Server as i32;
                span.flags =
                    FLAG_SAMPLED | FLAG_HAS_IS_REMOTE | if root { 0 } else { FLAG_IS_REMOTE };
                let tag_ids = &self.effective_tags[tags.0 as usize..(tags.0 + span_tags) as usize];
                let mut attrs = Vec::with_capacity(route.server_attrs.len() + tag_ids.len() + 4);
                attrs.extend_from_slice(&route.server_attrs);
                push_status_attrs(&mut attrs, model, route.grpc, node.status_code);
                attrs.extend(
                    tag_ids
                        .iter()
                        .map(|&id| model.tag_attrs[id as usize].clone()),
                );
                if root {
                    let agent = below(&mut self.rng, model.user_agents.len() as u32);
                    attrs.push(model.user_agents[agent as usize].clone());
                    let ip = self.rng.next_u64();
                    attrs.push(kv_str(
                        "client.address",
                        format!(
                            "{}.{}.{}.{}",
                            CLIENT_FIRST_OCTETS[(ip & 7) as usize],
                            ip >> 8 & 0xff,
                            ip >> 16 & 0xff,
                            1 + (ip >> 24 & 0xff) % 254
                        ),
                    ));
                }
                span.attributes = attrs;
                if node.error {
                    let (reason, exception) = http_reason(node.status_code);
                    let message = format!("{} {reason}", node.status_code);
                    span.events.push(Event {
                        time_unix_nano: (end - duration / 20) as u64,
                        name: "exception".to_owned(),
                        attributes: vec![
                            kv_str("exception.type", exception),
                            kv_str("exception.message", message.clone()),
                        ],
                        dropped_attributes_count: 0,
                    });
                    span.status = Some(error_status(message));
                }
            }
            NodeKind::Client { route, call } => {
                let route_model = &model.routes[route as usize];
                let call = &route_model.calls[call as usize];
                span.name = call.name.clone();
                span.kind = SpanKind::Client as i32;
                span.flags = FLAG_SAMPLED | FLAG_HAS_IS_REMOTE;
                let mut attrs = Vec::with_capacity(call.attrs.len() + 2);
                attrs.extend_from_slice(&call.attrs);
                push_status_attrs(&mut attrs, model, call.grpc, node.status_code);
                span.attributes = attrs;
                if node.error {
                    let (reason, _) = http_reason(node.status_code);
                    span.status = Some(error_status(format!(
                        "{} failed: {} {reason}",
                        call.callee_label, node.status_code
                    )));
                }
            }
            NodeKind::Database { route } => {
                let database = model.routes[route as usize]
                    .database
                    .as_ref()
                    .expect("database nodes exist only for routes with a database");
                span.name = database.name.clone();
                span.kind = SpanKind::Client as i32;
                span.flags = FLAG_SAMPLED | FLAG_HAS_IS_REMOTE;
                let mut attrs = Vec::with_capacity(database.attrs.len() + 1);
                attrs.extend_from_slice(&database.attrs);
                if let Some(prefix) = &database.per_user_statement {
                    attrs.push(kv_str(
                        "db.statement",
                        format!("{prefix}{:016x}", self.user_id),
                    ));
                }
                span.attributes = attrs;
            }
        }
        self.out.push((node.resource, span));

        let scale = if node.inner > 0.0 {
            duration as f64 / node.inner
        } else {
            0.0
        };
        let mut child = node.first_child;
        while child != NONE {
            let child_node = self.nodes[child as usize];
            let child_start = (start + (child_node.offset * scale) as i64).min(end);
            let child_end = (child_start + (child_node.natural * scale) as i64).min(end);
            self.emit(child, child_start, child_end - child_start, Some(span_id));
            child = child_node.next_sibling;
        }
    }
}

fn push_status_attrs(attrs: &mut Vec<KeyValue>, model: &Model, grpc: bool, status_code: i64) {
    if status_code == 200 {
        attrs.push(model.status_ok_http.clone());
        if grpc {
            attrs.push(model.status_ok_grpc.clone());
        }
    } else {
        attrs.push(kv_int("http.response.status_code", status_code));
        if grpc {
            attrs.push(kv_int("rpc.grpc.status_code", grpc_code(status_code)));
        }
    }
}

fn error_status(message: String) -> Status {
    Status {
        message,
        code: StatusCode::Error as i32,
    }
}

impl WeightedTagSets {
    fn pick(&self, rng: &mut ChaCha8Rng) -> Option<usize> {
        (!self.sets.is_empty()).then(|| pick(&self.cumulative, rng))
    }
}

/// Index drawn with probability proportional to its weight, from cumulative
/// weights (the last one positive).
fn pick(cumulative: &[f64], rng: &mut ChaCha8Rng) -> usize {
    let total = cumulative.last().copied().unwrap_or(0.0);
    let target = unit(rng) * total;
    cumulative
        .partition_point(|&c| c <= target)
        .min(cumulative.len().saturating_sub(1))
}

/// Uniform in [0, 1), 53 bits.
fn unit(rng: &mut ChaCha8Rng) -> f64 {
    (rng.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

/// Uniform in [0, n) (Lemire's multiply, bias below 2^-32 for small n).
fn below(rng: &mut ChaCha8Rng, n: u32) -> u32 {
    (((rng.next_u64() >> 32) * n as u64) >> 32) as u32
}

/// Standard normal (Box–Muller, one of the pair).
fn normal(rng: &mut ChaCha8Rng) -> f64 {
    let u1 = 1.0 - unit(rng);
    let u2 = unit(rng);
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

fn lognormal(rng: &mut ChaCha8Rng, median: f64, sigma: f64) -> f64 {
    median * (sigma * normal(rng)).exp()
}

/// Groups a route's calls into sequential stages of parallel calls, and places
/// its database access (reads first, writes last).
fn plan_steps(service: &str, route: &str, calls: usize, database: bool) -> Vec<Step> {
    // One bit per call after the first: set = parallel with the previous one.
    let shape = fnv1a(&format!("{service} {route}"));
    let mut steps: Vec<Step> = (0..calls)
        .map(|call| Step {
            kind: StepKind::Call(call as u32),
            sequential: call == 0 || shape >> (call - 1) & 1 == 0,
        })
        .collect();
    if database {
        let step = Step {
            kind: StepKind::Database,
            sequential: true,
        };
        if is_write(route) {
            steps.push(step);
        } else {
            steps.insert(0, step);
        }
    }
    steps
}

/// The store a route plausibly talks to, by the names of its service and route.
fn database_for(service: &str, route: &str, has_calls: bool) -> Option<DatabaseModel> {
    let service_lower = service.to_ascii_lowercase();
    let short = service_lower
        .strip_suffix("service")
        .unwrap_or(&service_lower)
        .trim_matches(|c: char| c == '-' || c == '_');
    let short = if short.is_empty() {
        service_lower.as_str()
    } else {
        short
    };
    let has = |words: &[&str]| words.iter().any(|w| service_lower.contains(w));
    let write = is_write(route);
    let route_lower = route.to_ascii_lowercase();

    if has(&["cart", "session", "cache"]) {
        let command = if write { "HSET" } else { "HGET" };
        let key = if has(&["cart"]) { "cart" } else { "session" };
        return Some(DatabaseModel {
            name: command.to_owned(),
            attrs: vec![
                kv_str("db.system", "redis"),
                kv_str("db.namespace", "0"),
                kv_str("db.operation.name", command),
                kv_str("server.address", format!("redis-{short}")),
                kv_int("server.port", 6379),
            ],
            per_user_statement: Some(format!("{command} {key}:")),
            median_nanos: 250.0 * NANOS_PER_MICRO,
            sigma: 0.6,
        });
    }
    let (table, statement) = if has(&["catalog", "product", "inventory", "stock"]) {
        let columns = "id, name, description, picture, price_usd";
        let statement = if write {
            "UPDATE products SET stock = stock - $1 WHERE id = $2".to_owned()
        } else if route_lower.contains("search") {
            format!(
                "SELECT {columns} FROM products WHERE name ILIKE $1 OR description ILIKE $1 LIMIT 50"
            )
        } else if route_lower.ends_with('s') {
            format!("SELECT {columns} FROM products ORDER BY id LIMIT 100")
        } else {
            format!("SELECT {columns} FROM products WHERE id = $1")
        };
        ("products", statement)
    } else if has(&["order", "checkout"]) {
        let statement = if write {
            "INSERT INTO orders (id, user_id, total_usd, shipping_address, created_at) VALUES ($1, $2, $3, $4, now())"
        } else {
            "SELECT id, total_usd, created_at FROM orders WHERE user_id = $1 ORDER BY created_at DESC LIMIT 20"
        };
        ("orders", statement.to_owned())
    } else if has(&["payment", "billing"]) && write {
        let statement = "INSERT INTO payments (id, order_id, amount_usd, card_last4, created_at) VALUES ($1, $2, $3, $4, now())";
        ("payments", statement.to_owned())
    } else if has(&["user", "account", "auth", "profile", "customer"]) {
        let statement = if write {
            "UPDATE users SET name = $2, email = $3 WHERE id = $1"
        } else {
            "SELECT id, email, name FROM users WHERE id = $1"
        };
        ("users", statement.to_owned())
    } else if !has_calls && fnv1a(&format!("{service} {route}")).is_multiple_of(4) {
        let table: String = short
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect();
        let table = plural(&table);
        let statement = format!("SELECT * FROM {table} WHERE id = $1");
        return Some(postgres(short, &table, statement, false));
    } else {
        return None;
    };
    Some(postgres(short, table, statement, write))
}

fn plural(noun: &str) -> String {
    if noun.ends_with('s') {
        noun.to_owned()
    } else if let Some(stem) = noun.strip_suffix('y') {
        format!("{stem}ies")
    } else {
        format!("{noun}s")
    }
}

fn postgres(database: &str, table: &str, statement: String, write: bool) -> DatabaseModel {
    let operation = statement
        .split_whitespace()
        .next()
        .unwrap_or("SELECT")
        .to_owned();
    DatabaseModel {
        name: format!("{operation} {table}"),
        attrs: vec![
            kv_str("db.system", "postgresql"),
            kv_str("db.namespace", database),
            kv_str("db.operation.name", operation),
            kv_str("db.collection.name", table),
            kv_str("db.statement", statement),
            kv_str("server.address", format!("postgres-{database}")),
            kv_int("server.port", 5432),
        ],
        per_user_statement: None,
        median_nanos: if write { 2500.0 } else { 1200.0 } * NANOS_PER_MICRO,
        sigma: if write { 0.7 } else { 0.9 },
    }
}

/// Whether a route name reads like a state change (POST, database write): one
/// of its words (split at punctuation and camelCase) is a verb that changes
/// state.
fn is_write(route: &str) -> bool {
    const VERBS: [&str; 13] = [
        "add", "set", "put", "update", "create", "place", "charge", "send", "ship", "empty",
        "delete", "remove", "checkout",
    ];
    let mut word = String::new();
    let mut found = false;
    let mut check = |word: &mut String| {
        found |= VERBS.contains(&word.as_str());
        word.clear();
    };
    for c in route.chars() {
        if !c.is_ascii_alphanumeric() {
            check(&mut word);
            continue;
        }
        if c.is_ascii_uppercase() && !word.is_empty() {
            check(&mut word);
        }
        word.push(c.to_ascii_lowercase());
    }
    check(&mut word);
    found
}

/// `rpc.*` attributes of a gRPC call: `shop.CartService/GetCart` style.
fn rpc_attrs(service: &str, route: &str) -> [KeyValue; 3] {
    let lower = service.to_ascii_lowercase();
    let base = lower.strip_suffix("service").unwrap_or(&lower);
    let mut pascal = String::with_capacity(service.len() + 7);
    for part in base.split(['-', '_', '.']).filter(|p| !p.is_empty()) {
        let mut chars = part.chars();
        if let Some(first) = chars.next() {
            pascal.push(first.to_ascii_uppercase());
            pascal.push_str(chars.as_str());
        }
    }
    pascal.push_str("Service");
    let method = route.trim_start_matches('/');
    [
        kv_str("rpc.system", "grpc"),
        kv_str("rpc.service", format!("shop.{pascal}")),
        kv_str("rpc.method", if method.is_empty() { route } else { method }),
    ]
}

/// The language of the service's SDK: hipster-shop's real ones when the name
/// is known, else a fixed choice by name.
fn sdk_language(service: &str) -> &'static str {
    const KNOWN: [(&str, &str); 10] = [
        ("frontend", "go"),
        ("cart", "dotnet"),
        ("productcatalog", "go"),
        ("currency", "nodejs"),
        ("payment", "nodejs"),
        ("email", "python"),
        ("recommendation", "python"),
        ("ad", "java"),
        ("checkout", "go"),
        ("shipping", "go"),
    ];
    let lower = service.to_ascii_lowercase();
    let base = lower.strip_suffix("service").unwrap_or(&lower);
    if let Some((_, language)) = KNOWN.iter().find(|(name, _)| *name == base) {
        return language;
    }
    const LANGUAGES: [&str; 6] = ["go", "java", "python", "nodejs", "dotnet", "rust"];
    LANGUAGES[(fnv1a(service) % LANGUAGES.len() as u64) as usize]
}

fn http_reason(code: i64) -> (&'static str, &'static str) {
    match code {
        400 => ("Bad Request", "BadRequestError"),
        401 => ("Unauthorized", "UnauthorizedError"),
        403 => ("Forbidden", "ForbiddenError"),
        404 => ("Not Found", "NotFoundError"),
        429 => ("Too Many Requests", "RateLimitedError"),
        502 => ("Bad Gateway", "BadGatewayError"),
        503 => ("Service Unavailable", "ServiceUnavailableError"),
        504 => ("Gateway Timeout", "TimeoutError"),
        _ => ("Internal Server Error", "InternalError"),
    }
}

fn grpc_code(http: i64) -> i64 {
    match http {
        200..=299 => 0,
        400 => 3,
        401 => 16,
        403 => 7,
        404 => 5,
        429 => 8,
        503 => 14,
        504 => 4,
        500 => 13,
        _ => 2,
    }
}

/// FNV-1a: a fixed, dependency-free hash for choices that must never change
/// between builds.
fn fnv1a(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ byte as u64).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

#[derive(Default)]
struct KeyInterner(HashMap<String, u32>);

impl KeyInterner {
    fn intern(&mut self, key: &str) -> u32 {
        let next = self.0.len() as u32;
        *self.0.entry(key.to_owned()).or_insert(next)
    }
}

fn kv(key: &str, value: Value) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue { value: Some(value) }),
        ..Default::default()
    }
}

fn kv_str(key: &str, value: impl Into<String>) -> KeyValue {
    kv(key, Value::StringValue(value.into()))
}

fn kv_int(key: &str, value: i64) -> KeyValue {
    kv(key, Value::IntValue(value))
}

fn tag_attr(key: &str, value: &TagValue) -> KeyValue {
    kv(
        key,
        match value {
            TagValue::Str(s) => Value::StringValue(s.clone()),
            TagValue::Int(i) => Value::IntValue(*i),
            TagValue::Double(d) => Value::DoubleValue(*d),
            TagValue::Bool(b) => Value::BoolValue(*b),
        },
    )
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, HashMap, HashSet};
    use std::path::Path;

    use super::super::{HIPSTER_SHOP, load_topology};
    use super::*;

    const START: i64 = 1_700_000_000_000_000_000;
    const HOUR: i64 = 3_600_000_000_000;

    fn hipster() -> Topology {
        load_topology(Path::new(HIPSTER_SHOP)).expect("hipster-shop loads")
    }

    fn generate(seed: u64, traces: u64, max_spans: usize) -> Vec<ExportTraceServiceRequest> {
        let mut generator = Generator::new(hipster(), seed, START, HOUR).with_traces(traces);
        std::iter::from_fn(|| generator.next_request(max_spans)).collect()
    }

    fn encoded(requests: &[ExportTraceServiceRequest]) -> Vec<u8> {
        requests.iter().flat_map(|r| r.encode_to_vec()).collect()
    }

    fn attr<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a Value> {
        attrs
            .iter()
            .find(|a| a.key == key)
            .and_then(|a| a.value.as_ref())
            .and_then(|v| v.value.as_ref())
    }

    fn str_attr<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a str> {
        match attr(attrs, key) {
            Some(Value::StringValue(s)) => Some(s),
            _ => None,
        }
    }

    fn int_attr(attrs: &[KeyValue], key: &str) -> Option<i64> {
        match attr(attrs, key) {
            Some(Value::IntValue(i)) => Some(*i),
            _ => None,
        }
    }

    /// A span with its resource.
    struct Flat<'a> {
        resource: &'a [KeyValue],
        span: &'a Span,
    }

    impl Flat<'_> {
        fn service(&self) -> &str {
            str_attr(self.resource, "service.name").expect("service.name")
        }
        fn duration(&self) -> i64 {
            (self.span.end_time_unix_nano - self.span.start_time_unix_nano) as i64
        }
        fn is_error(&self) -> bool {
            self.span
                .status
                .as_ref()
                .is_some_and(|s| s.code == StatusCode::Error as i32)
        }
    }

    /// Spans by trace id, in order of appearance.
    fn by_trace(requests: &[ExportTraceServiceRequest]) -> BTreeMap<Vec<u8>, Vec<Flat<'_>>> {
        let mut traces: BTreeMap<Vec<u8>, Vec<Flat<'_>>> = BTreeMap::new();
        for resource_spans in requests.iter().flat_map(|r| &r.resource_spans) {
            let resource = &resource_spans
                .resource
                .as_ref()
                .expect("resource")
                .attributes;
            for span in resource_spans.scope_spans.iter().flat_map(|s| &s.spans) {
                traces
                    .entry(span.trace_id.clone())
                    .or_default()
                    .push(Flat { resource, span });
            }
        }
        traces
    }

    #[test]
    fn same_seed_gives_identical_bytes_and_another_seed_does_not() {
        let first = encoded(&generate(42, 500, 1000));
        let second = encoded(&generate(42, 500, 1000));
        assert!(first.len() > 100_000);
        assert!(first == second, "same seed, different bytes");
        let other = encoded(&generate(43, 500, 1000));
        assert!(first != other, "different seeds, same bytes");
    }

    #[test]
    fn batching_does_not_change_the_traces() {
        let canonical =
            |requests: &[ExportTraceServiceRequest]| -> BTreeMap<Vec<u8>, Vec<Vec<u8>>> {
                by_trace(requests)
                    .into_iter()
                    .map(|(id, spans)| {
                        let mut spans: Vec<Vec<u8>> =
                            spans.iter().map(|f| f.span.encode_to_vec()).collect();
                        spans.sort();
                        (id, spans)
                    })
                    .collect()
            };
        let small = generate(7, 300, 1);
        let large = generate(7, 300, 100_000);
        assert_eq!(small.len(), 300, "max_spans 1: one trace per request");
        assert_eq!(large.len(), 1);
        assert!(canonical(&small) == canonical(&large));
    }

    #[test]
    fn requests_hold_whole_traces_within_max_spans() {
        let requests = generate(1, 2000, 200);
        let mut seen = HashSet::new();
        for request in &requests {
            let traces = by_trace(std::slice::from_ref(request));
            let spans: usize = traces.values().map(Vec::len).sum();
            assert!(
                spans <= 200 || traces.len() == 1,
                "{spans} spans in {} traces",
                traces.len()
            );
            for id in traces.keys() {
                assert!(seen.insert(id.clone()), "a trace is split across requests");
            }
        }
        assert_eq!(seen.len(), 2000);
        let mut generator = Generator::new(hipster(), 1, START, HOUR).with_traces(0);
        assert!(generator.next_request(100).is_none());
    }

    #[test]
    fn default_trace_count_is_the_natural_load_over_the_window() {
        let generator = Generator::new(hipster(), 1, START, HOUR / 2);
        assert_eq!(generator.traces_total(), 18_440 / 2);
    }

    /// The structural invariants of every generated trace.
    #[test]
    fn traces_are_well_formed_and_realistic() {
        let topology = hipster();
        let generator = Generator::new(topology.clone(), 5, START, HOUR);
        let route_of = |service: &str, name: &str| {
            topology
                .routes
                .iter()
                .position(|r| topology.services[r.service].name == service && r.name == name)
                .unwrap_or_else(|| panic!("no route {service} {name}"))
        };
        // Expected spans per route: server + database + per call (client + callee).
        fn expected_spans(generator: &Generator, route: usize) -> usize {
            let model = &generator.model.routes[route];
            1 + usize::from(model.database.is_some())
                + model
                    .calls
                    .iter()
                    .map(|c| 1 + expected_spans(generator, c.callee as usize))
                    .sum::<usize>()
        }

        let traces_total = 4000;
        let requests = {
            let mut generator =
                Generator::new(topology.clone(), 5, START, HOUR).with_traces(traces_total);
            std::iter::from_fn(|| generator.next_request(1000)).collect::<Vec<_>>()
        };
        let traces = by_trace(&requests);
        assert_eq!(traces.len(), traces_total as usize);

        let mut roots_by_route: HashMap<String, usize> = HashMap::new();
        let mut place_order = (0, 0);
        let mut databases = HashSet::new();
        for spans in traces.values() {
            let by_id: HashMap<&[u8], &Flat> = spans
                .iter()
                .map(|f| (f.span.span_id.as_slice(), f))
                .collect();
            assert_eq!(
                by_id.len(),
                spans.len(),
                "span ids are unique within a trace"
            );
            let mut children: HashMap<&[u8], Vec<&Flat>> = HashMap::new();
            let roots: Vec<&Flat> = spans
                .iter()
                .filter(|f| f.span.parent_span_id.is_empty())
                .collect();
            assert_eq!(roots.len(), 1, "one root per trace");
            let root = roots[0];
            assert_eq!(root.service(), "frontend");
            assert_eq!(root.span.kind, SpanKind::Server as i32);
            let root_start = root.span.start_time_unix_nano as i64;
            assert!((START..START + HOUR).contains(&root_start));
            assert!(str_attr(&root.span.attributes, "client.address").is_some());
            *roots_by_route.entry(root.span.name.clone()).or_default() += 1;
            let root_route = route_of("frontend", &root.span.name);
            assert_eq!(
                spans.len(),
                expected_spans(&generator, root_route),
                "{}",
                root.span.name
            );

            for flat in spans {
                let span = flat.span;
                assert_eq!(span.trace_id.len(), 16);
                assert_eq!(span.span_id.len(), 8);
                assert!(
                    span.trace_id.iter().any(|&b| b != 0) && span.span_id.iter().any(|&b| b != 0)
                );
                assert!(span.start_time_unix_nano <= span.end_time_unix_nano);
                if span.parent_span_id.is_empty() {
                    continue;
                }
                let parent = by_id
                    .get(span.parent_span_id.as_slice())
                    .expect("the parent is in the same trace");
                children.entry(&parent.span.span_id).or_default().push(flat);
                assert!(
                    parent.span.start_time_unix_nano <= span.start_time_unix_nano
                        && span.end_time_unix_nano <= parent.span.end_time_unix_nano,
                    "{} lies outside its parent {}",
                    span.name,
                    parent.span.name
                );
            }

            for flat in spans {
                let span = flat.span;
                let kids = children
                    .get(span.span_id.as_slice())
                    .map_or(&[][..], Vec::as_slice);
                if span.kind == SpanKind::Server as i32 {
                    let route = &topology.routes[route_of(flat.service(), &span.name)];
                    let max = (route.max_latency_millis * 1e6) as i64;
                    assert!(
                        flat.duration() <= max,
                        "{} {} lasts {} > {max}",
                        flat.service(),
                        span.name,
                        flat.duration()
                    );
                    assert_eq!(
                        str_attr(&span.attributes, "http.route"),
                        Some(span.name.as_str())
                    );
                    assert_eq!(
                        str_attr(&span.attributes, "url.path"),
                        Some(span.name.as_str())
                    );
                    assert!(str_attr(&span.attributes, "http.request.method").is_some());
                    assert_eq!(
                        str_attr(&span.attributes, "server.address"),
                        Some(flat.service())
                    );
                    let status = int_attr(&span.attributes, "http.response.status_code")
                        .expect("status code");
                    let failed = int_attr(&span.attributes, "http.status_code") == Some(503);
                    assert_eq!(flat.is_error(), failed, "error tags set the status");
                    assert_eq!(status, if failed { 503 } else { 200 });
                    if failed {
                        assert_eq!(span.events.len(), 1);
                        assert_eq!(span.events[0].name, "exception");
                        assert!(
                            span.status
                                .as_ref()
                                .is_some_and(|s| s.message == "503 Service Unavailable")
                        );
                    }
                    if (flat.service(), span.name.as_str()) == ("checkoutservice", "/PlaceOrder") {
                        place_order.0 += 1;
                        place_order.1 += usize::from(failed);
                    }
                    // Client children each wrap exactly one server span.
                    assert_eq!(
                        kids.len(),
                        route.calls.len()
                            + kids
                                .iter()
                                .filter(|k| str_attr(&k.span.attributes, "db.system").is_some())
                                .count()
                    );
                    for kid in kids {
                        assert_eq!(kid.span.kind, SpanKind::Client as i32);
                        assert_eq!(
                            kid.resource, flat.resource,
                            "client spans run on the caller"
                        );
                    }
                    if span.parent_span_id.is_empty() {
                        continue;
                    }
                    let parent = by_id[span.parent_span_id.as_slice()];
                    assert_eq!(parent.span.kind, SpanKind::Client as i32);
                    assert_eq!(parent.span.name, span.name);
                    assert_eq!(
                        str_attr(&parent.span.attributes, "peer.service"),
                        Some(flat.service())
                    );
                    assert_eq!(
                        str_attr(&parent.span.attributes, "server.address"),
                        Some(flat.service())
                    );
                    assert_eq!(
                        int_attr(&parent.span.attributes, "http.response.status_code"),
                        Some(status)
                    );
                    assert_eq!(
                        parent.is_error(),
                        flat.is_error(),
                        "errors propagate to the client span"
                    );
                    let network = parent.duration() - flat.duration();
                    assert!(
                        (0..=MAX_NETWORK_NANOS).contains(&network),
                        "network time {network}"
                    );
                    assert!(parent.duration() <= max + MAX_NETWORK_NANOS);
                    assert_eq!(
                        span.flags,
                        FLAG_SAMPLED | FLAG_HAS_IS_REMOTE | FLAG_IS_REMOTE
                    );
                } else if let Some(system) = str_attr(&span.attributes, "db.system") {
                    assert!(kids.is_empty(), "database spans are leaves");
                    let statement =
                        str_attr(&span.attributes, "db.statement").expect("db.statement");
                    databases.insert((flat.service().to_owned(), system.to_owned()));
                    if system == "redis" {
                        let key = statement
                            .strip_prefix("HGET cart:")
                            .expect("HGET cart:<id>");
                        assert_eq!(key.len(), 16);
                        assert_eq!(
                            str_attr(&span.attributes, "server.address"),
                            Some("redis-cart")
                        );
                    }
                } else {
                    assert_eq!(kids.len(), 1, "{} wraps one server span", span.name);
                    assert_eq!(kids[0].span.kind, SpanKind::Server as i32);
                }
            }
        }

        // Root routes follow tracesPerHour: /cart is 14400 / 18440 of them.
        let cart_share = roots_by_route["/cart"] as f64 / traces_total as f64;
        assert!(
            (cart_share - 14400.0 / 18440.0).abs() < 0.03,
            "{cart_share}"
        );
        assert_eq!(roots_by_route.len(), 5);
        // /PlaceOrder fails with weight 25 of 110.
        let failure_share = place_order.1 as f64 / place_order.0 as f64;
        assert!(place_order.0 > 50, "{place_order:?}");
        assert!(
            (failure_share - 25.0 / 110.0).abs() < 0.1,
            "{failure_share}"
        );
        assert!(databases.contains(&("cartservice".to_owned(), "redis".to_owned())));
        assert!(databases.contains(&("productcatalogservice".to_owned(), "postgresql".to_owned())));
    }

    #[test]
    fn attributes_and_resources_follow_the_topology() {
        let requests = generate(9, 3000, 1000);
        let traces = by_trace(&requests);
        let mut starters = HashSet::new();
        let mut frontend_versions: HashMap<(String, String), usize> = HashMap::new();
        let mut inherited_regions = 0;
        for spans in traces.values() {
            let by_id: HashMap<&[u8], &Flat> = spans
                .iter()
                .map(|f| (f.span.span_id.as_slice(), f))
                .collect();
            for flat in spans {
                let resource = flat.resource;
                let instance = str_attr(resource, "service.instance.id").expect("instance");
                assert!(instance.starts_with(flat.service()), "{instance}");
                assert!(str_attr(resource, "host.name").is_some());
                assert!(str_attr(resource, "telemetry.sdk.language").is_some());
                assert_eq!(resource.iter().filter(|a| a.key == "region").count(), 1);
                let version = str_attr(resource, "version").expect("version").to_owned();
                let region = str_attr(resource, "region").expect("region").to_owned();
                match flat.service() {
                    "adservice" => {
                        assert_eq!((version.as_str(), region.as_str()), ("v37", "us-east-1"))
                    }
                    "frontend" if flat.span.parent_span_id.is_empty() => {
                        *frontend_versions
                            .entry((version, region.clone()))
                            .or_default() += 1;
                    }
                    "productcatalogservice" if flat.span.kind == SpanKind::Server as i32 => {
                        // `inherit: ["region"]`: the caller's region.
                        let client = by_id[flat.span.parent_span_id.as_slice()];
                        assert_eq!(str_attr(client.resource, "region"), Some(region.as_str()));
                        inherited_regions += 1;
                    }
                    _ => {}
                }
                if flat.service() == "frontend" && flat.span.name == "/product" {
                    match attr(&flat.span.attributes, "starter") {
                        Some(Value::StringValue(s)) => starters.insert(s.clone()),
                        other => panic!("starter is a string tag, got {other:?}"),
                    };
                }
                if let Some(value) = attr(&flat.span.attributes, "http.status_code") {
                    assert!(matches!(value, Value::IntValue(503)), "ints stay ints");
                }
            }
        }
        assert_eq!(starters.len(), 3);
        assert!(inherited_regions > 100);
        // Weights 1:1:2 between (v127, east), (v125, east), (v125, west).
        let west = frontend_versions[&("v125".to_owned(), "us-west-1".to_owned())] as f64 / 3000.0;
        assert!((west - 0.5).abs() < 0.05, "{west}");
        assert_eq!(frontend_versions.len(), 3);
        // Grouping: one ResourceSpans per resource within each request.
        for request in &requests {
            let resources: Vec<Vec<u8>> = request
                .resource_spans
                .iter()
                .map(|r| r.resource.as_ref().expect("resource").encode_to_vec())
                .collect();
            assert_eq!(
                resources.iter().collect::<HashSet<_>>().len(),
                resources.len()
            );
        }
    }

    #[test]
    fn route_shapes_mix_sequential_and_parallel_calls() {
        let generator = Generator::new(hipster(), 1, START, HOUR);
        let shapes: Vec<(String, Vec<bool>)> = generator
            .model
            .routes
            .iter()
            .filter(|r| r.calls.len() > 1)
            .map(|r| {
                (
                    r.name.clone(),
                    r.steps.iter().skip(1).map(|s| s.sequential).collect(),
                )
            })
            .collect();
        let all: Vec<bool> = shapes.iter().flat_map(|(_, s)| s.clone()).collect();
        assert!(all.contains(&true) && all.contains(&false), "{shapes:?}");
    }

    #[test]
    fn write_verbs_are_whole_words() {
        assert!(is_write("/PlaceOrder"));
        assert!(is_write("/checkout"));
        assert!(is_write("/cart/add_item"));
        assert!(!is_write("/Address"));
        assert!(!is_write("/GetCart"));
        assert!(!is_write("/shipping"));
    }
}
