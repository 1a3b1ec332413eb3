//! The borrowing OTLP/protobuf decoders (traces and logs) against the prost
//! ones they replaced.
//!
//! Requests are generated as raw protobuf, so that they can hold what prost's
//! encoder never writes but a client may: fields in any order, an embedded
//! message split over several fields (merged on decode), unknown fields of
//! every wire type, groups, values a later field overrides. For each body both
//! decoders must give the same batch, counts and rejection message, or both
//! refuse it (with the same message, unless prost already fails to decode it).

use arrow::array::RecordBatch;
use lighttrace_ingest::{
    DecodedLogs, DecodedSpans, IngestError, OtlpEncoding, decode_otlp_logs,
    decode_otlp_logs_protobuf_with_prost, decode_otlp_protobuf_with_prost, decode_otlp_traces,
};

// ---------------------------------------------------------------- encoding

/// A protobuf field, to be encoded as written (no reordering, no merging).
#[derive(Debug, Clone)]
enum F {
    Varint(u32, u64),
    Fixed32(u32, u32),
    Fixed64(u32, u64),
    Bytes(u32, Vec<u8>),
    Message(u32, Vec<F>),
    Group(u32, Vec<F>),
}

fn varint(mut value: u64, out: &mut Vec<u8>) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn key(tag: u32, wire_type: u8, out: &mut Vec<u8>) {
    varint((u64::from(tag) << 3) | u64::from(wire_type), out);
}

fn encode(fields: &[F], out: &mut Vec<u8>) {
    for field in fields {
        match field {
            F::Varint(tag, v) => {
                key(*tag, 0, out);
                varint(*v, out);
            }
            F::Fixed64(tag, v) => {
                key(*tag, 1, out);
                out.extend_from_slice(&v.to_le_bytes());
            }
            F::Bytes(tag, bytes) => {
                key(*tag, 2, out);
                varint(bytes.len() as u64, out);
                out.extend_from_slice(bytes);
            }
            F::Message(tag, inner) => {
                let mut body = Vec::new();
                encode(inner, &mut body);
                key(*tag, 2, out);
                varint(body.len() as u64, out);
                out.extend_from_slice(&body);
            }
            F::Group(tag, inner) => {
                key(*tag, 3, out);
                encode(inner, out);
                key(*tag, 4, out);
            }
            F::Fixed32(tag, v) => {
                key(*tag, 5, out);
                out.extend_from_slice(&v.to_le_bytes());
            }
        }
    }
}

fn body(fields: &[F]) -> Vec<u8> {
    let mut out = Vec::new();
    encode(fields, &mut out);
    out
}

fn text(tag: u32, s: &str) -> F {
    F::Bytes(tag, s.as_bytes().to_vec())
}

// ---------------------------------------------------------------- comparing

#[derive(Debug, Default)]
struct Tally {
    ok: usize,
    accepted: usize,
    rejected: usize,
    wire_errors: usize,
    refusals: usize,
}

/// What a decoder made of a body: the batch, accepted, rejected and message.
struct Outcome {
    batch: RecordBatch,
    accepted: usize,
    rejected: usize,
    rejection_message: Option<String>,
}

impl From<DecodedSpans> for Outcome {
    fn from(d: DecodedSpans) -> Self {
        Outcome {
            batch: d.batch,
            accepted: d.accepted,
            rejected: d.rejected,
            rejection_message: d.rejection_message,
        }
    }
}

impl From<DecodedLogs> for Outcome {
    fn from(d: DecodedLogs) -> Self {
        Outcome {
            batch: d.batch,
            accepted: d.accepted,
            rejected: d.rejected,
            rejection_message: d.rejection_message,
        }
    }
}

/// Decodes trace request `body` both ways and insists on the same outcome.
fn compare(body: &[u8], tally: &mut Tally) {
    let ours = decode_otlp_traces(body, OtlpEncoding::Protobuf, "proj").map(Outcome::from);
    let reference = decode_otlp_protobuf_with_prost(body, "proj").map(Outcome::from);
    compare_outcomes(ours, reference, body, tally);
}

/// Decodes logs request `body` both ways and insists on the same outcome.
fn compare_logs(body: &[u8], tally: &mut Tally) {
    let ours = decode_otlp_logs(body, OtlpEncoding::Protobuf, "proj").map(Outcome::from);
    let reference = decode_otlp_logs_protobuf_with_prost(body, "proj").map(Outcome::from);
    compare_outcomes(ours, reference, body, tally);
}

fn compare_outcomes(
    ours: Result<Outcome, IngestError>,
    reference: Result<Outcome, IngestError>,
    body: &[u8],
    tally: &mut Tally,
) {
    match (ours, reference) {
        (Ok(ours), Ok(reference)) => {
            assert_same(&ours, &reference, body);
            tally.ok += 1;
            tally.accepted += ours.accepted;
            tally.rejected += ours.rejected;
        }
        (Err(IngestError::Malformed(ours)), Err(IngestError::Malformed(reference))) => {
            if reference.starts_with("invalid OTLP protobuf: ") {
                assert!(
                    ours.starts_with("invalid OTLP protobuf: "),
                    "prost: {reference}\nours: {ours}\nbody: {body:02x?}"
                );
                tally.wire_errors += 1;
            } else {
                assert_eq!(ours, reference, "body: {body:02x?}");
                tally.refusals += 1;
            }
        }
        (ours, reference) => panic!(
            "outcomes differ\nours: {:?}\nprost: {:?}\nbody: {body:02x?}",
            ours.map(|d| (d.accepted, d.rejected)),
            reference.map(|d| (d.accepted, d.rejected)),
        ),
    }
}

fn assert_same(ours: &Outcome, reference: &Outcome, body: &[u8]) {
    assert_eq!(
        (ours.accepted, ours.rejected, &ours.rejection_message),
        (
            reference.accepted,
            reference.rejected,
            &reference.rejection_message
        ),
        "body: {body:02x?}"
    );
    if ours.batch != reference.batch {
        let show = |batch| {
            arrow::util::pretty::pretty_format_batches(&[batch])
                .map(|t| t.to_string())
                .unwrap_or_default()
        };
        panic!(
            "batches differ\nours:\n{}\nprost:\n{}\nbody: {body:02x?}",
            show(ours.batch.clone()),
            show(reference.batch.clone())
        );
    }
}

// ---------------------------------------------------------------- generating

/// xorshift64*: deterministic, no dependency.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }
    fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next() as u8).collect()
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

const STRINGS: &[&str] = &[
    "",
    "a",
    "GET /api/cart/{id}",
    "quote \" backslash \\ nl \n tab \t nul \u{0} bell \u{7}",
    "é 🎉 ü",
    "service.name",
    "x=y,vendor=1",
];

fn string(rng: &mut Rng) -> String {
    if rng.chance(10) {
        "long ".repeat(rng.below(40))
    } else {
        rng.pick(STRINGS).to_string()
    }
}

/// Random bytes that are not always UTF-8 (for `bytes` fields, and sometimes
/// `string` ones, which prost refuses).
fn string_field(rng: &mut Rng, tag: u32) -> F {
    if rng.below(400) == 0 {
        F::Bytes(tag, vec![0xff, 0xfe, b'a'])
    } else {
        text(tag, &string(rng))
    }
}

fn any_value(rng: &mut Rng, depth: usize) -> Vec<F> {
    let cases = if depth > 20 { 5 } else { 9 };
    let mut fields = Vec::new();
    // Usually one case; sometimes several, of which the last wins (or merges).
    let count = match rng.below(20) {
        0 => 0,
        1 | 2 => 2,
        3 => 3,
        _ => 1,
    };
    for _ in 0..count {
        fields.push(match rng.below(cases) {
            0 => string_field(rng, 1),
            1 => F::Varint(2, rng.below(3) as u64),
            2 => {
                let random = rng.next();
                F::Varint(
                    3,
                    *rng.pick(&[0, 1, 200, u64::MAX, i64::MIN as u64, random]),
                )
            }
            3 => F::Fixed64(
                4,
                rng.pick(&[
                    0.5f64,
                    1.0,
                    -0.0,
                    1e300,
                    5e-324,
                    f64::NAN,
                    f64::INFINITY,
                    f64::NEG_INFINITY,
                    0.1,
                ])
                .to_bits(),
            ),
            4 => {
                let len = rng.below(6);
                F::Bytes(7, rng.bytes(len))
            }
            5 => F::Varint(8, rng.below(5) as u64),
            6 | 7 => F::Message(5, array(rng, depth + 1)),
            _ => F::Message(6, kvlist(rng, depth + 1)),
        });
    }
    fields
}

fn array(rng: &mut Rng, depth: usize) -> Vec<F> {
    let len = if depth > 3 {
        rng.below(2)
    } else {
        rng.below(4)
    };
    (0..len)
        .map(|_| F::Message(1, any_value(rng, depth)))
        .collect()
}

fn kvlist(rng: &mut Rng, depth: usize) -> Vec<F> {
    let len = if depth > 3 {
        rng.below(2)
    } else {
        rng.below(4)
    };
    (0..len)
        .map(|_| F::Message(1, key_value(rng, depth)))
        .collect()
}

/// A value nested `levels` arrays/kvlists deep.
fn nested(rng: &mut Rng, levels: usize) -> Vec<F> {
    let mut value = vec![F::Varint(3, 7)];
    for _ in 0..levels {
        value = if rng.chance(50) {
            vec![F::Message(5, vec![F::Message(1, value)])]
        } else {
            vec![F::Message(
                6,
                vec![F::Message(1, vec![text(1, "k"), F::Message(2, value)])],
            )]
        };
    }
    value
}

fn key_value(rng: &mut Rng, depth: usize) -> Vec<F> {
    let mut fields = vec![string_field(rng, 1)];
    match rng.below(100) {
        0..=4 => {}                                  // no value at all
        5..=9 => fields.push(F::Message(2, vec![])), // a value with nothing set
        10 => {
            let levels = 15 + rng.below(4);
            fields.push(F::Message(2, nested(rng, levels)));
        }
        _ => fields.push(F::Message(2, any_value(rng, depth))),
    }
    if rng.chance(3) {
        fields.push(F::Varint(3, 1));
    }
    fields
}

fn attributes(rng: &mut Rng, tag: u32, max: usize) -> Vec<F> {
    (0..rng.below(max + 1))
        .map(|_| F::Message(tag, key_value(rng, 1)))
        .collect()
}

fn id(rng: &mut Rng, len: usize) -> Vec<u8> {
    match rng.below(25) {
        0 => vec![0; len],
        1 => rng.bytes(len / 2),
        2 => vec![],
        _ => {
            let mut bytes = rng.bytes(len);
            bytes[0] |= 1;
            bytes
        }
    }
}

fn span(rng: &mut Rng) -> Vec<F> {
    let start = match rng.below(20) {
        0 => 0,
        1 => u64::MAX,
        _ => 1_700_000_000_000_000_000 + rng.below(1_000_000) as u64,
    };
    let end = match rng.below(20) {
        0 => start.saturating_sub(1),
        1 => u64::MAX,
        _ => start.saturating_add(rng.below(1_000_000) as u64),
    };
    let mut fields = vec![
        F::Bytes(1, id(rng, 16)),
        F::Bytes(2, id(rng, 8)),
        F::Fixed64(7, start),
        F::Fixed64(8, end),
    ];
    if rng.chance(60) {
        fields.push(string_field(rng, 5));
    }
    if rng.chance(30) {
        fields.push(string_field(rng, 3));
    }
    if rng.chance(60) {
        let parent = match rng.below(10) {
            0 => vec![0; 8],
            1 => rng.bytes(3),
            _ => id(rng, 8),
        };
        fields.push(F::Bytes(4, parent));
    }
    if rng.chance(70) {
        fields.push(F::Varint(
            6,
            *rng.pick(&[0, 1, 2, 3, 4, 5, 6, 99, u64::MAX]),
        ));
    }
    if rng.chance(20) {
        fields.push(F::Fixed32(16, rng.next() as u32));
    }
    for tag in [10, 12, 14] {
        if rng.chance(10) {
            fields.push(F::Varint(tag, rng.below(5) as u64));
        }
    }
    fields.extend(attributes(rng, 9, 6));
    for _ in 0..rng.below(3) {
        let mut event = vec![F::Fixed64(1, *rng.pick(&[0, 5, u64::MAX, start]))];
        if rng.chance(70) {
            event.push(string_field(rng, 2));
        }
        event.extend(attributes(rng, 3, 3));
        if rng.chance(10) {
            event.push(F::Varint(4, 2));
        }
        fields.push(F::Message(11, event));
    }
    for _ in 0..rng.below(3) {
        let mut link = vec![F::Bytes(1, id(rng, 16)), F::Bytes(2, id(rng, 8))];
        if rng.chance(50) {
            link.push(string_field(rng, 3));
        }
        link.extend(attributes(rng, 4, 3));
        if rng.chance(10) {
            link.push(F::Varint(5, 1));
        }
        if rng.chance(10) {
            link.push(F::Fixed32(6, 0x100));
        }
        fields.push(F::Message(13, link));
    }
    if rng.chance(60) {
        let mut status = Vec::new();
        if rng.chance(50) {
            status.push(string_field(rng, 2));
        }
        if rng.chance(80) {
            status.push(F::Varint(3, *rng.pick(&[0, 1, 2, 7])));
        }
        fields.push(F::Message(15, status));
    }
    fields
}

fn resource_spans(rng: &mut Rng) -> Vec<F> {
    let mut fields = Vec::new();
    if rng.chance(85) {
        let mut resource = Vec::new();
        if rng.chance(75) {
            let name = match rng.below(6) {
                0 => vec![F::Varint(3, 5)],
                1 => vec![text(1, "")],
                2 => vec![],
                _ => vec![text(1, "checkout")],
            };
            resource.push(F::Message(
                1,
                vec![text(1, "service.name"), F::Message(2, name)],
            ));
        }
        resource.extend(attributes(rng, 1, 5));
        if rng.chance(15) {
            resource.push(F::Varint(2, 3));
        }
        if rng.chance(15) {
            resource.push(F::Message(
                3,
                vec![
                    text(1, "https://schema"),
                    string_field(rng, 2),
                    text(3, "service.name"),
                    text(3, "host.name"),
                    text(4, "x"),
                ],
            ));
        }
        fields.push(F::Message(1, resource));
    }
    for _ in 0..rng.below(3) {
        let mut scope_spans = Vec::new();
        if rng.chance(80) {
            let mut scope = vec![string_field(rng, 1)];
            if rng.chance(60) {
                scope.push(string_field(rng, 2));
            }
            scope.extend(attributes(rng, 3, 2));
            if rng.chance(10) {
                scope.push(F::Message(
                    3,
                    vec![text(1, "deep"), F::Message(2, nested(rng, 30))],
                ));
            }
            scope_spans.push(F::Message(1, scope));
        }
        for _ in 0..rng.below(5) {
            scope_spans.push(F::Message(2, span(rng)));
        }
        if rng.chance(10) {
            scope_spans.push(string_field(rng, 3));
        }
        fields.push(F::Message(2, scope_spans));
    }
    if rng.chance(10) {
        fields.push(text(3, "https://opentelemetry.io/schemas/1.4.0"));
    }
    fields
}

fn request(rng: &mut Rng) -> Vec<F> {
    (0..1 + rng.below(3))
        .map(|_| F::Message(1, resource_spans(rng)))
        .collect()
}

/// A field number that none of the OTLP trace messages uses.
fn unknown_tag(rng: &mut Rng) -> u32 {
    *rng.pick(&[17, 20, 99, 1000, 536_870_911])
}

fn unknown_field(rng: &mut Rng) -> F {
    let tag = unknown_tag(rng);
    match rng.below(6) {
        0 => F::Varint(tag, rng.next()),
        1 => F::Fixed32(tag, 1),
        2 => F::Fixed64(tag, 2),
        3 => F::Bytes(tag, rng.bytes(3)),
        4 => F::Message(tag, vec![F::Varint(1, 1), text(2, "x")]),
        _ => F::Group(
            tag,
            vec![F::Varint(1, 1), F::Group(21, vec![F::Fixed32(2, 3)])],
        ),
    }
}

/// Rewrites a message the way other encoders may: unknown fields injected,
/// fields shuffled, an embedded message split into two fields that decoders
/// merge. Applied to every message of the tree.
fn perturb(rng: &mut Rng, fields: &mut Vec<F>) {
    for field in fields.iter_mut() {
        if let F::Message(_, inner) = field {
            perturb(rng, inner);
        }
    }
    if rng.chance(8) {
        let at = rng.below(fields.len() + 1);
        let unknown = unknown_field(rng);
        fields.insert(at, unknown);
    }
    if rng.chance(5) && !fields.is_empty() {
        // Split one embedded message in two: prost merges them back.
        let at = rng.below(fields.len());
        if let F::Message(tag, inner) = &fields[at]
            && inner.len() >= 2
        {
            let (tag, inner) = (*tag, inner.clone());
            let cut = 1 + rng.below(inner.len() - 1);
            fields[at] = F::Message(tag, inner[..cut].to_vec());
            fields.insert(at + 1, F::Message(tag, inner[cut..].to_vec()));
        }
    }
    if rng.chance(6) {
        for i in (1..fields.len()).rev() {
            let j = rng.below(i + 1);
            fields.swap(i, j);
        }
    }
}

fn generated(seed: u64) -> Vec<u8> {
    let mut rng = Rng::new(seed);
    let mut fields = request(&mut rng);
    if rng.chance(70) {
        perturb(&mut rng, &mut fields);
    }
    body(&fields)
}

// ---------------------------------------------------------------- tests

#[test]
fn generated_requests_decode_as_prost_decodes_them() {
    let mut tally = Tally::default();
    for seed in 0..4000 {
        compare(&generated(seed), &mut tally);
    }
    // The generator must reach every outcome, or this test proves little.
    assert!(tally.ok > 2000, "{tally:?}");
    assert!(tally.accepted > 2000, "{tally:?}");
    assert!(tally.rejected > 500, "{tally:?}");
    assert!(tally.wire_errors > 50, "{tally:?}");
    assert!(tally.refusals > 50, "{tally:?}");
}

#[test]
fn every_truncation_of_a_request_decodes_as_prost_decodes_it() {
    let mut tally = Tally::default();
    for seed in [3, 11, 42] {
        let full = generated(seed);
        for cut in 0..=full.len() {
            compare(&full[..cut], &mut tally);
        }
    }
    assert!(tally.wire_errors > 100, "{tally:?}");
}

#[test]
fn corrupted_requests_and_random_bytes_decode_as_prost_decodes_them() {
    let mut tally = Tally::default();
    let mut rng = Rng::new(7);
    for seed in 0..1500 {
        let mut bytes = generated(seed);
        if bytes.is_empty() {
            continue;
        }
        for _ in 0..1 + rng.below(3) {
            let at = rng.below(bytes.len());
            bytes[at] ^= 1 << rng.below(8);
        }
        compare(&bytes, &mut tally);
        let len = rng.below(200);
        let noise = rng.bytes(len);
        compare(&noise, &mut tally);
    }
    assert!(tally.ok > 100 && tally.wire_errors > 100, "{tally:?}");
}

fn valid_span() -> Vec<F> {
    vec![
        F::Bytes(1, vec![1; 16]),
        F::Bytes(2, vec![2; 8]),
        text(5, "op"),
        F::Fixed64(7, 10),
        F::Fixed64(8, 20),
    ]
}

/// A request of one span, with `span` as its fields.
fn one_span(span: Vec<F>) -> Vec<F> {
    vec![F::Message(
        1,
        vec![F::Message(2, vec![F::Message(2, span)])],
    )]
}

#[test]
fn every_known_field_with_another_wire_type_is_refused_by_both() {
    let mut tally = Tally::default();
    let wrong = |tag: u32| {
        vec![
            F::Varint(tag, 1),
            F::Fixed32(tag, 1),
            F::Fixed64(tag, 1),
            F::Bytes(tag, vec![]),
            F::Group(tag, vec![]),
        ]
    };
    for tag in 1..=17 {
        for field in wrong(tag) {
            let mut span = valid_span();
            span.push(field.clone());
            compare(&body(&one_span(span)), &mut tally);
            // The same inside an attribute value, a key value, a status and an event.
            let mut span = valid_span();
            span.push(F::Message(
                9,
                vec![text(1, "k"), F::Message(2, vec![field.clone()])],
            ));
            span.push(F::Message(9, vec![field.clone()]));
            compare(&body(&one_span(span)), &mut tally);
            let mut span = valid_span();
            span.push(F::Message(15, vec![field.clone()]));
            span.push(F::Message(11, vec![field.clone()]));
            compare(&body(&one_span(span)), &mut tally);
        }
    }
    // Packed encoding of a singular scalar (prost only unpacks repeated ones).
    let mut span = valid_span();
    span.push(F::Bytes(6, vec![2]));
    compare(&body(&one_span(span)), &mut tally);
    assert!(tally.wire_errors > 50 && tally.ok > 10, "{tally:?}");
}

#[test]
fn malformed_wire_details_are_refused_by_both() {
    let mut tally = Tally::default();
    let span = body(&valid_span());
    let cases: Vec<Vec<u8>> = vec![
        vec![0x0a, 0x80], // truncated length
        vec![
            0x0a, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01,
        ], // huge length
        vec![
            0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02,
        ], // varint overflow
        vec![
            0x08, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00,
        ], // 11 bytes
        vec![
            0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01,
        ], // u64::MAX: fine
        vec![0x00],       // tag 0
        vec![0x0e, 0x00], // wire type 6
        vec![0x0f, 0x00], // wire type 7
        vec![0x80, 0x80, 0x80, 0x80, 0x20], // key above u32::MAX
        vec![0xab, 0x02], // group never closed
        vec![0xab, 0x02, 0xb4, 0x02], // group closed by another tag
        vec![0xac, 0x02], // end group alone
        vec![0xab, 0x02, 0xac, 0x02], // empty unknown group: fine
        vec![0x0b, 0x0c], // group as resource_spans
    ];
    for case in cases {
        compare(&case, &mut tally);
        // The same inside a span.
        let mut inner = span.clone();
        inner.extend_from_slice(&case);
        let wrapped = body(&[F::Message(1, vec![F::Message(2, vec![F::Bytes(2, inner)])])]);
        compare(&wrapped, &mut tally);
    }
    assert!(tally.ok >= 2 && tally.wire_errors >= 20, "{tally:?}");
}

#[test]
fn nesting_near_both_limits_is_decided_as_prost_decides_it() {
    // Rendered attributes stop at 16 levels; values that are not rendered
    // (scope attributes, rejected spans) only at prost's recursion limit of
    // 100 messages, which these depths straddle.
    let mut tally = Tally::default();
    let mut rng = Rng::new(1);
    for levels in (14..20).chain(40..52) {
        for _ in 0..4 {
            let deep = nested(&mut rng, levels);
            let attribute = vec![text(1, "deep"), F::Message(2, deep)];
            let mut rendered = valid_span();
            rendered.push(F::Message(9, attribute.clone()));
            compare(&body(&one_span(rendered)), &mut tally);
            let mut rejected = valid_span();
            rejected[0] = F::Bytes(1, vec![0; 16]);
            rejected.push(F::Message(9, attribute.clone()));
            compare(&body(&one_span(rejected)), &mut tally);
            let in_scope = vec![F::Message(
                1,
                vec![F::Message(
                    2,
                    vec![
                        F::Message(1, vec![F::Message(3, attribute.clone())]),
                        F::Message(2, valid_span()),
                    ],
                )],
            )];
            compare(&body(&in_scope), &mut tally);
            // Deep unknown groups count against the same limit.
            let mut group = F::Varint(1, 1);
            for _ in 0..levels * 2 {
                group = F::Group(20, vec![group]);
            }
            let mut with_group = valid_span();
            with_group.push(group);
            compare(&body(&one_span(with_group)), &mut tally);
        }
    }
    assert!(
        tally.ok > 20 && tally.wire_errors > 20 && tally.refusals > 10,
        "{tally:?}"
    );
}

#[test]
fn a_refusal_gives_way_to_a_wire_error_later_in_the_body() {
    let mut tally = Tally::default();
    let mut rng = Rng::new(2);
    let mut deep = valid_span();
    deep.push(F::Message(
        9,
        vec![text(1, "k"), F::Message(2, nested(&mut rng, 17))],
    ));
    let mut broken = valid_span();
    broken.push(F::Bytes(5, vec![0xff]));
    let body = body(&[
        F::Message(1, vec![F::Message(2, vec![F::Message(2, deep)])]),
        F::Message(1, vec![F::Message(2, vec![F::Message(2, broken)])]),
    ]);
    compare(&body, &mut tally);
    assert_eq!(tally.wire_errors, 1, "{tally:?}");
}

/// Scalar attributes in the byte layout that encoders write, read by the
/// decoder's fast path, and the near misses that must fall back to the general
/// path: lengths at the one-byte boundary, every varint size, bools that are
/// not 0 or 1, non-ASCII and invalid UTF-8, and trailing or missing bytes.
#[test]
fn scalar_attributes_in_the_common_layout_decode_as_prost_decodes_them() {
    let mut tally = Tally::default();
    let long = "k".repeat(200);
    let mut values: Vec<Vec<F>> = vec![vec![]];
    for len in [0, 1, 15, 16, 17, 32, 33, 125, 126, 127, 128, 200] {
        values.push(vec![text(1, &long[..len])]);
    }
    values.push(vec![text(1, "é 🎉 ü")]);
    values.push(vec![F::Bytes(1, vec![b'a', 0xff])]);
    values.push(vec![F::Bytes(1, vec![0xc3])]);
    for v in [0, 1, 2, 127, 128, 300, u64::MAX, 1 << 63] {
        values.push(vec![F::Varint(2, v)]);
        values.push(vec![F::Varint(3, v)]);
    }
    for d in [
        0.25,
        -0.0,
        1e300,
        1e-300,
        f64::NAN,
        f64::INFINITY,
        123456.789,
    ] {
        values.push(vec![F::Fixed64(4, d.to_bits())]);
    }
    values.push(vec![F::Fixed32(4, 1)]);
    values.push(vec![F::Varint(3, 5), F::Varint(3, 6)]);
    values.push(vec![text(1, "a"), F::Varint(3, 6)]);
    values.push(vec![F::Varint(3, 6), F::Varint(99, 1)]);
    for value in values {
        for key in [&long[..3], &long[..127], &long[..128], "", "ключ"] {
            let mut span = valid_span();
            span.push(F::Message(
                9,
                vec![text(1, key), F::Message(2, value.clone())],
            ));
            compare(&body(&one_span(span)), &mut tally);
            let mut span = valid_span();
            span.push(F::Message(
                9,
                vec![F::Message(2, value.clone()), text(1, key)],
            ));
            compare(&body(&one_span(span)), &mut tally);
        }
        // An invalid key and a key split over two fields.
        let mut span = valid_span();
        span.push(F::Message(
            9,
            vec![F::Bytes(1, vec![0xff]), F::Message(2, value.clone())],
        ));
        span.push(F::Message(
            9,
            vec![text(1, "a"), text(1, "b"), F::Message(2, value.clone())],
        ));
        compare(&body(&one_span(span)), &mut tally);
    }
    assert!(tally.ok > 100 && tally.wire_errors > 10, "{tally:?}");
}

// ---------------------------------------------------------------- logs

fn log_record(rng: &mut Rng) -> Vec<F> {
    let time = *rng.pick(&[0, 5, u64::MAX, 1_700_000_000_000_000_000]);
    let mut fields = vec![F::Fixed64(1, time)];
    if rng.chance(70) {
        fields.push(F::Fixed64(11, *rng.pick(&[0, 7, u64::MAX, time])));
    }
    if rng.chance(80) {
        fields.push(F::Bytes(9, log_id(rng, 16)));
    }
    if rng.chance(70) {
        fields.push(F::Bytes(10, log_id(rng, 8)));
    }
    if rng.chance(70) {
        fields.push(F::Varint(2, *rng.pick(&[0, 9, 17, 24, 99, u64::MAX])));
    }
    if rng.chance(60) {
        fields.push(string_field(rng, 3));
    }
    if rng.chance(30) {
        fields.push(string_field(rng, 12));
    }
    if rng.chance(40) {
        fields.push(F::Fixed32(8, *rng.pick(&[0, 1, u32::MAX])));
    }
    if rng.chance(10) {
        fields.push(F::Varint(7, 3));
    }
    // The body: usually one, sometimes none, empty, too deep, or split in two.
    match rng.below(20) {
        0 => {}
        1 => fields.push(F::Message(5, vec![])),
        2 => {
            let levels = 15 + rng.below(4);
            fields.push(F::Message(5, nested(rng, levels)));
        }
        3 | 4 => {
            fields.push(F::Message(5, any_value(rng, 1)));
            fields.push(F::Message(5, any_value(rng, 1)));
        }
        _ => fields.push(F::Message(5, any_value(rng, 1))),
    }
    fields.extend(attributes(rng, 6, 5));
    fields
}

/// An id of `len` bytes, or one of another length, empty or all zeros.
fn log_id(rng: &mut Rng, len: usize) -> Vec<u8> {
    match rng.below(12) {
        0 => rng.bytes(len + 1),
        1 => rng.bytes(len / 2),
        _ => id(rng, len),
    }
}

fn resource_logs(rng: &mut Rng) -> Vec<F> {
    let mut fields = Vec::new();
    if rng.chance(85) {
        let mut resource = Vec::new();
        if rng.chance(75) {
            let name = match rng.below(6) {
                0 => vec![F::Varint(3, 5)],
                1 => vec![text(1, "")],
                _ => vec![text(1, "checkout")],
            };
            resource.push(F::Message(
                1,
                vec![text(1, "service.name"), F::Message(2, name)],
            ));
        }
        resource.extend(attributes(rng, 1, 5));
        fields.push(F::Message(1, resource));
    }
    for _ in 0..rng.below(3) {
        let mut scope_logs = Vec::new();
        if rng.chance(80) {
            let mut scope = vec![string_field(rng, 1)];
            if rng.chance(60) {
                scope.push(string_field(rng, 2));
            }
            scope.extend(attributes(rng, 3, 2));
            scope_logs.push(F::Message(1, scope));
        }
        for _ in 0..rng.below(5) {
            scope_logs.push(F::Message(2, log_record(rng)));
        }
        if rng.chance(10) {
            scope_logs.push(string_field(rng, 3));
        }
        fields.push(F::Message(2, scope_logs));
    }
    if rng.chance(10) {
        fields.push(text(3, "https://opentelemetry.io/schemas/1.4.0"));
    }
    fields
}

fn generated_logs(seed: u64) -> Vec<u8> {
    let mut rng = Rng::new(seed);
    let mut fields: Vec<F> = (0..1 + rng.below(3))
        .map(|_| F::Message(1, resource_logs(&mut rng)))
        .collect();
    if rng.chance(70) {
        perturb(&mut rng, &mut fields);
    }
    body(&fields)
}

fn valid_log_record() -> Vec<F> {
    vec![
        F::Fixed64(1, 10),
        F::Bytes(9, vec![1; 16]),
        F::Bytes(10, vec![2; 8]),
        F::Message(5, vec![text(1, "hello")]),
    ]
}

/// A logs request of one record, with `record` as its fields.
fn one_log_record(record: Vec<F>) -> Vec<F> {
    vec![F::Message(
        1,
        vec![F::Message(2, vec![F::Message(2, record)])],
    )]
}

#[test]
fn generated_logs_requests_decode_as_prost_decodes_them() {
    let mut tally = Tally::default();
    for seed in 0..3000 {
        compare_logs(&generated_logs(seed), &mut tally);
    }
    assert!(tally.ok > 1500, "{tally:?}");
    assert!(tally.accepted > 1500, "{tally:?}");
    assert!(tally.rejected > 300, "{tally:?}");
    assert!(tally.wire_errors > 30, "{tally:?}");
    assert!(tally.refusals > 30, "{tally:?}");
}

#[test]
fn every_truncation_and_corruption_of_a_logs_request_decodes_as_prost_decodes_it() {
    let mut tally = Tally::default();
    for seed in [3, 11, 42] {
        let full = generated_logs(seed);
        for cut in 0..=full.len() {
            compare_logs(&full[..cut], &mut tally);
        }
    }
    let mut rng = Rng::new(9);
    for seed in 0..1000 {
        let mut bytes = generated_logs(seed);
        if bytes.is_empty() {
            continue;
        }
        for _ in 0..1 + rng.below(3) {
            let at = rng.below(bytes.len());
            bytes[at] ^= 1 << rng.below(8);
        }
        compare_logs(&bytes, &mut tally);
    }
    assert!(tally.ok > 100 && tally.wire_errors > 100, "{tally:?}");
}

#[test]
fn every_known_log_record_field_with_another_wire_type_is_refused_by_both() {
    let mut tally = Tally::default();
    for tag in 1..=13 {
        for field in [
            F::Varint(tag, 1),
            F::Fixed32(tag, 1),
            F::Fixed64(tag, 1),
            F::Bytes(tag, vec![]),
            F::Group(tag, vec![]),
        ] {
            let mut record = valid_log_record();
            record.push(field.clone());
            compare_logs(&body(&one_log_record(record)), &mut tally);
            // The same inside the body, and in a rejected record.
            let mut record = valid_log_record();
            record.push(F::Message(5, vec![field.clone()]));
            compare_logs(&body(&one_log_record(record)), &mut tally);
            let mut record = valid_log_record();
            record[1] = F::Bytes(9, vec![1; 3]);
            record.push(F::Message(5, vec![field.clone()]));
            record.push(F::Message(6, vec![field]));
            compare_logs(&body(&one_log_record(record)), &mut tally);
        }
    }
    assert!(tally.wire_errors > 30 && tally.ok > 10, "{tally:?}");
}

/// prost merges a `body` given twice: a scalar is replaced, an array or
/// kvlist of the same case extended, another case replaces it.
#[test]
fn log_bodies_given_twice_merge_as_prost_merges_them() {
    let mut tally = Tally::default();
    let values: Vec<Vec<F>> = vec![
        vec![],
        vec![text(1, "a")],
        vec![F::Varint(3, 7)],
        vec![F::Fixed64(4, 0.5f64.to_bits())],
        vec![F::Varint(2, 1)],
        vec![F::Bytes(7, vec![1, 2])],
        vec![F::Varint(8, 1)],
        vec![F::Message(5, vec![F::Message(1, vec![text(1, "x")])])],
        vec![F::Message(5, vec![F::Message(1, vec![F::Varint(3, 1)])])],
        vec![F::Message(
            6,
            vec![F::Message(
                1,
                vec![text(1, "k"), F::Message(2, vec![text(1, "v")])],
            )],
        )],
        vec![F::Varint(99, 1)],
    ];
    for first in &values {
        for second in &values {
            let mut record = valid_log_record();
            record.pop();
            record.push(F::Message(5, first.clone()));
            record.push(text(3, "between"));
            record.push(F::Message(5, second.clone()));
            compare_logs(&body(&one_log_record(record)), &mut tally);
        }
    }
    assert_eq!(tally.ok, values.len() * values.len(), "{tally:?}");
}

#[test]
fn log_bodies_nested_near_both_limits_are_decided_as_prost_decides_them() {
    let mut tally = Tally::default();
    let mut rng = Rng::new(5);
    for levels in (14..20).chain(92..100) {
        let deep = nested(&mut rng, levels);
        let mut rendered = valid_log_record();
        rendered.push(F::Message(5, deep.clone()));
        compare_logs(&body(&one_log_record(rendered)), &mut tally);
        let mut rejected = valid_log_record();
        rejected[2] = F::Bytes(10, vec![2; 3]);
        rejected.push(F::Message(5, deep));
        compare_logs(&body(&one_log_record(rejected)), &mut tally);
    }
    assert!(
        tally.ok > 5 && tally.wire_errors > 5 && tally.refusals >= 3,
        "{tally:?}"
    );
}
