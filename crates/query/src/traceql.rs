//! TraceQL, the subset Grafana's Tempo data source and common hand-written
//! queries use, translated to SQL over `spans` and planned by DataFusion (never
//! interpreted row by row).
//!
//! Supported:
//! - spansets `{}` and `{ condition }`, combined with `&&` (the trace has a
//!   span in each) and `||` (in either), with parentheses;
//! - conditions `attribute OP value` joined by `&&` and `||`, with parentheses;
//!   `OP` is one of `= != =~ !~ > >= < <=` (regular expressions are fully
//!   anchored, as in Tempo);
//! - attributes: `span.key`, `resource.key`, unscoped `.key` (the span's
//!   attribute, else the resource's), quoted keys (`span."a b"`), and the
//!   intrinsics `name`, `status` (`error`, `ok`, `unset`), `kind` (`server`,
//!   `client`, `producer`, `consumer`, `internal`, `unspecified`), `duration`,
//!   `statusMessage`, `span:name`, `span:status`, `span:kind`,
//!   `span:duration`, `span:statusMessage`, `trace:rootService`,
//!   `trace:rootName`, `trace:duration`;
//! - values: strings (`"x"`), integers and decimals (compared numerically
//!   with the attribute's value), durations (`100ms`, `1.5s`, `2m`, `1h`,
//!   `10us`, `100ns`), `true` / `false`, and the status and kind names.
//!
//! - existence checks `attribute != nil` / `= nil`, bare `true` / `false`,
//!   and root tests `nestedSetParent < 0` (as Grafana's Traces Drilldown
//!   writes them); query hints `with (…)` are accepted and ignored (answers
//!   are exact and newest first anyway);
//! - metrics queries ([`parse_metrics`]): `{…} | rate()`, `count_over_time()`,
//!   `quantile_over_time(attr, q…)`, `histogram_over_time(attr)`,
//!   `min/max/avg/sum_over_time(attr)`, each with `by (attr, …)`, for
//!   `duration` or a numeric attribute (computed in [`crate::metrics`]).
//!
//! Anything else (pipelines such as `| count() > 2` and `| select(…)`,
//! second-stage `| topk(…)`, structural operators `>>`, `>`, `~`, `!`
//! negation, arithmetic, other scopes such as `event.` and `link.`) is
//! refused with an error that names the construct.
//!
//! [`plan`] returns the SQL of the matching spans with the values as named
//! parameters (`$v0`, `$v1`, …, bound by DataFusion, never pasted into the
//! text; attribute keys are SQL string literals with quotes doubled).
//!
//! ```
//! use lighttrace_query::traceql;
//! let query = traceql::parse(r#"{ resource.service.name = "cart" && duration > 100ms }"#).unwrap();
//! assert_eq!(query.spansets.len(), 1);
//! assert!(traceql::parse("{ } | count() > 2").unwrap_err().to_string().contains("pipeline"));
//! ```

use std::fmt;

use datafusion::common::ScalarValue;

/// A query that is not valid TraceQL, or outside the supported subset.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct TraceQlError(pub String);

fn error<T>(message: impl Into<String>) -> Result<T, TraceQlError> {
    Err(TraceQlError(message.into()))
}

/// A parsed query: spansets and how they combine.
#[derive(Debug, Clone, PartialEq)]
pub struct Query {
    /// The spansets, in the order they appear.
    pub spansets: Vec<Option<Condition>>,
    /// How the spansets combine; leaves index `spansets`.
    pub combination: Combination,
}

/// Spansets combined into a trace-level match.
#[derive(Debug, Clone, PartialEq)]
pub enum Combination {
    Spanset(usize),
    And(Box<Combination>, Box<Combination>),
    Or(Box<Combination>, Box<Combination>),
}

/// A condition on one span.
#[derive(Debug, Clone, PartialEq)]
pub enum Condition {
    Compare(Attribute, Op, Static),
    /// `attribute != nil` (`true`) or `attribute = nil` (`false`).
    Exists(Attribute, bool),
    /// A bare `true` or `false`.
    Literal(bool),
    And(Box<Condition>, Box<Condition>),
    Or(Box<Condition>, Box<Condition>),
}

/// What a condition reads.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Attribute {
    /// `span.key`.
    Span(String),
    /// `resource.key`.
    Resource(String),
    /// `.key`: the span's attribute, else the resource's.
    Any(String),
    Name,
    Status,
    StatusMessage,
    Kind,
    Duration,
    RootService,
    RootName,
    TraceDuration,
    /// `nestedSetParent`, only in root tests (`nestedSetParent < 0`: the span
    /// has no parent), as Grafana's Traces Drilldown writes them.
    NestedSetParent,
}

impl Attribute {
    /// The name Tempo shows for it in search results (`span.http.route`…);
    /// `None` for intrinsics, which search results carry in their own fields.
    pub fn result_key(&self) -> Option<&str> {
        match self {
            Attribute::Span(key) | Attribute::Resource(key) | Attribute::Any(key) => Some(key),
            _ => None,
        }
    }

    /// The attribute as TraceQL writes it (`span.http.route`, `duration`).
    pub fn text(&self) -> String {
        attribute_text(self)
    }

    /// Whether it is a property of the whole trace.
    pub fn is_trace_level(&self) -> bool {
        matches!(
            self,
            Attribute::RootService | Attribute::RootName | Attribute::TraceDuration
        )
    }
}

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Eq,
    Ne,
    Regex,
    NotRegex,
    Gt,
    Ge,
    Lt,
    Le,
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Op::Eq => "=",
            Op::Ne => "!=",
            Op::Regex => "=~",
            Op::NotRegex => "!~",
            Op::Gt => ">",
            Op::Ge => ">=",
            Op::Lt => "<",
            Op::Le => "<=",
        })
    }
}

/// A literal value.
#[derive(Debug, Clone, PartialEq)]
pub enum Static {
    String(String),
    Int(i64),
    Float(f64),
    /// Nanoseconds.
    Duration(i64),
    Bool(bool),
    /// `error`, `ok`, `unset`.
    Status(&'static str),
    /// `server`, `client`, …
    Kind(&'static str),
}

impl fmt::Display for Static {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Static::String(s) => write!(f, "{s:?}"),
            Static::Int(i) => write!(f, "{i}"),
            Static::Float(x) => write!(f, "{x}"),
            Static::Duration(ns) => write!(f, "{ns}ns"),
            Static::Bool(b) => write!(f, "{b}"),
            Static::Status(s) | Static::Kind(s) => f.write_str(s),
        }
    }
}

// ---------------------------------------------------------------- lexer

#[derive(Debug, Clone, PartialEq)]
enum Token {
    LBrace,
    RBrace,
    LParen,
    RParen,
    And,
    Or,
    Op(Op),
    Not,
    Pipe,
    /// `>>`, `<<`, `~`, `!>>` …: structural operators.
    Structural(String),
    Str(String),
    /// A number or duration as written.
    Number(String),
    /// A bare word: attribute path, intrinsic, keyword (`true`, `error`…).
    Word(String),
    /// A word followed by a quoted key: `span."a b"` (the word keeps its dot).
    QuotedKey(String, String),
    Other(char),
}

fn is_word_char(c: char) -> bool {
    c.is_alphanumeric() || matches!(c, '_' | '.' | ':' | '-' | '/' | '@' | '#' | '$')
}

fn lex(text: &str) -> Result<Vec<Token>, TraceQlError> {
    let chars: Vec<char> = text.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        let two = |a: char, b: char| c == a && next == Some(b);
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        let (token, width) = if two('&', '&') {
            (Token::And, 2)
        } else if two('|', '|') {
            (Token::Or, 2)
        } else if two('>', '>') || two('<', '<') {
            (Token::Structural(format!("{c}{c}")), 2)
        } else if two('!', '=') {
            (Token::Op(Op::Ne), 2)
        } else if two('=', '~') {
            (Token::Op(Op::Regex), 2)
        } else if two('!', '~') {
            (Token::Op(Op::NotRegex), 2)
        } else if two('>', '=') {
            (Token::Op(Op::Ge), 2)
        } else if two('<', '=') {
            (Token::Op(Op::Le), 2)
        } else if two('!', '>') || two('!', '<') {
            (
                Token::Structural(format!("{c}{}", next.unwrap_or_default())),
                2,
            )
        } else {
            match c {
                '{' => (Token::LBrace, 1),
                '}' => (Token::RBrace, 1),
                '(' => (Token::LParen, 1),
                ')' => (Token::RParen, 1),
                '=' => (Token::Op(Op::Eq), 1),
                '>' => (Token::Op(Op::Gt), 1),
                '<' => (Token::Op(Op::Lt), 1),
                '!' => (Token::Not, 1),
                '|' => (Token::Pipe, 1),
                '~' => (Token::Structural("~".into()), 1),
                '"' | '`' => {
                    let (value, width) = string_literal(&chars[i..])?;
                    (Token::Str(value), width)
                }
                c if c.is_ascii_digit()
                    || (c == '-' && next.is_some_and(|n| n.is_ascii_digit())) =>
                {
                    let mut end = i + 1;
                    while end < chars.len()
                        && (chars[end].is_alphanumeric() || chars[end] == '.' || chars[end] == 'µ')
                    {
                        end += 1;
                    }
                    (Token::Number(chars[i..end].iter().collect()), end - i)
                }
                c if is_word_char(c) => {
                    let mut end = i;
                    while end < chars.len() && is_word_char(chars[end]) {
                        end += 1;
                    }
                    let word: String = chars[i..end].iter().collect();
                    if word.ends_with('.') && chars.get(end) == Some(&'"') {
                        let (key, width) = string_literal(&chars[end..])?;
                        (Token::QuotedKey(word, key), end - i + width)
                    } else {
                        (Token::Word(word), end - i)
                    }
                }
                other => (Token::Other(other), 1),
            }
        };
        tokens.push(token);
        i += width;
    }
    Ok(tokens)
}

/// A quoted string at the start of `chars`: its value and its width. `"…"`
/// takes `\"`, `\\`, `\n`, `\t`; backquotes take everything literally.
fn string_literal(chars: &[char]) -> Result<(String, usize), TraceQlError> {
    let quote = chars[0];
    let mut value = String::new();
    let mut i = 1;
    while i < chars.len() {
        let c = chars[i];
        if c == quote {
            return Ok((value, i + 1));
        }
        if c == '\\' && quote == '"' {
            match chars.get(i + 1) {
                Some('n') => value.push('\n'),
                Some('t') => value.push('\t'),
                Some(&other) => value.push(other),
                None => break,
            }
            i += 2;
            continue;
        }
        value.push(c);
        i += 1;
    }
    error("a string is not closed: add the closing quote")
}

// ---------------------------------------------------------------- parser

/// Parses `text` into a [`Query`], or says what is wrong or unsupported.
pub fn parse(text: &str) -> Result<Query, TraceQlError> {
    let tokens = lex(text)?;
    if tokens.is_empty() {
        return error("the query is empty; `{}` matches every span");
    }
    let mut parser = Parser {
        tokens,
        position: 0,
        spansets: Vec::new(),
    };
    let combination = parser.spanset_or()?;
    if parser.peek() == Some(&Token::Pipe)
        && let Some(Token::Word(word)) = parser.tokens.get(parser.position + 1)
        && METRICS_FUNCTIONS.contains(&word.as_str())
    {
        return error(format!(
            "`{word}()` is a metrics function: send metrics queries to /api/metrics/query_range or /api/metrics/query"
        ));
    }
    parser.hints()?;
    if let Some(token) = parser.peek() {
        return Err(parser.unexpected(token.clone(), "after the query"));
    }
    Ok(Query {
        spansets: parser.spansets,
        combination,
    })
}

const METRICS_FUNCTIONS: [&str; 8] = [
    "rate",
    "count_over_time",
    "quantile_over_time",
    "histogram_over_time",
    "min_over_time",
    "max_over_time",
    "avg_over_time",
    "sum_over_time",
];

/// A metrics query: `{…} | function(…) [by (…)]`.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricsQuery {
    /// The spans measured: those matching a spanset, in traces where the
    /// spansets combine.
    pub filter: Query,
    pub function: MetricsFunction,
    /// The `by (…)` attributes: one series per distinct combination.
    pub by: Vec<Attribute>,
}

/// A metrics function of the first stage.
#[derive(Debug, Clone, PartialEq)]
pub enum MetricsFunction {
    /// Matching spans per second in each step.
    Rate,
    /// Matching spans in each step.
    CountOverTime,
    /// The quantiles of the attribute in each step, one series per fraction
    /// (label `p`).
    QuantileOverTime(Attribute, Vec<f64>),
    /// Span counts per power-of-two bucket of the attribute (label
    /// `__bucket`, the bucket's upper bound; seconds for durations).
    HistogramOverTime(Attribute),
    MinOverTime(Attribute),
    MaxOverTime(Attribute),
    AvgOverTime(Attribute),
    SumOverTime(Attribute),
}

impl MetricsFunction {
    /// The function's TraceQL name.
    pub fn name(&self) -> &'static str {
        match self {
            MetricsFunction::Rate => "rate",
            MetricsFunction::CountOverTime => "count_over_time",
            MetricsFunction::QuantileOverTime(..) => "quantile_over_time",
            MetricsFunction::HistogramOverTime(_) => "histogram_over_time",
            MetricsFunction::MinOverTime(_) => "min_over_time",
            MetricsFunction::MaxOverTime(_) => "max_over_time",
            MetricsFunction::AvgOverTime(_) => "avg_over_time",
            MetricsFunction::SumOverTime(_) => "sum_over_time",
        }
    }

    /// The attribute it measures, if any.
    pub fn attribute(&self) -> Option<&Attribute> {
        match self {
            MetricsFunction::Rate | MetricsFunction::CountOverTime => None,
            MetricsFunction::QuantileOverTime(attribute, _)
            | MetricsFunction::HistogramOverTime(attribute)
            | MetricsFunction::MinOverTime(attribute)
            | MetricsFunction::MaxOverTime(attribute)
            | MetricsFunction::AvgOverTime(attribute)
            | MetricsFunction::SumOverTime(attribute) => Some(attribute),
        }
    }
}

/// Parses a metrics query (`{…} | rate() by (resource.service.name)`), or
/// says what is wrong or unsupported.
pub fn parse_metrics(text: &str) -> Result<MetricsQuery, TraceQlError> {
    let tokens = lex(text)?;
    if tokens.is_empty() {
        return error("the query is empty; try `{} | rate()`");
    }
    let mut parser = Parser {
        tokens,
        position: 0,
        spansets: Vec::new(),
    };
    let combination = parser.spanset_or()?;
    match parser.next() {
        Some(Token::Pipe) => {}
        Some(token) => return Err(parser.unexpected(token, "after the spansets")),
        None => {
            return error(
                "a metrics query needs a function: `{…} | rate()`, `count_over_time()`, `quantile_over_time(duration, .99)`, `histogram_over_time(duration)` …",
            );
        }
    }
    let function = parser.metrics_function()?;
    let mut by = Vec::new();
    if parser.peek() == Some(&Token::Word("by".into())) {
        parser.next();
        parser.expect(Token::LParen, "`(` after `by`")?;
        loop {
            by.push(parser.attribute_argument("in `by (…)`")?);
            match parser.next() {
                Some(Token::Other(',')) => continue,
                Some(Token::RParen) => break,
                Some(token) => return Err(parser.unexpected(token, "in `by (…)`")),
                None => return error("the query ends early: expected `)` to close `by (…)`"),
            }
        }
    }
    parser.hints()?;
    match parser.peek() {
        Some(Token::Pipe) => {
            return error(
                "second-stage functions (`| topk(…)`, `| bottomk(…)`, comparisons of series) are not supported",
            );
        }
        Some(token) => return Err(parser.unexpected(token.clone(), "after the metrics function")),
        None => {}
    }
    Ok(MetricsQuery {
        filter: Query {
            spansets: parser.spansets,
            combination,
        },
        function,
        by,
    })
}

struct Parser {
    tokens: Vec<Token>,
    position: usize,
    spansets: Vec<Option<Condition>>,
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.position)
    }

    fn next(&mut self) -> Option<Token> {
        let token = self.tokens.get(self.position).cloned();
        self.position += 1;
        token
    }

    fn expect(&mut self, wanted: Token, what: &str) -> Result<(), TraceQlError> {
        match self.next() {
            Some(token) if token == wanted => Ok(()),
            Some(token) => Err(self.unexpected(token, what)),
            None => error(format!("the query ends early: expected {what}")),
        }
    }

    fn unexpected(&self, token: Token, context: &str) -> TraceQlError {
        TraceQlError(match token {
            Token::Pipe => {
                "pipelines (`| count()`, `| select(…)`, `| avg(…)` …) are not supported".into()
            }
            Token::Structural(op) => format!(
                "structural operators (`{op}`: descendant, child, sibling …) are not supported"
            ),
            Token::Not => "negation with `!` is not supported; use `!=` or `!~`".into(),
            Token::Other(c @ ('+' | '*' | '%' | '^')) => {
                format!("arithmetic (`{c}`) is not supported")
            }
            Token::Op(op) => format!("unexpected `{op}` {context}"),
            Token::Word(word) => format!("unexpected `{word}` {context}"),
            Token::Str(s) => format!("unexpected string {s:?} {context}"),
            Token::Number(n) => format!("unexpected `{n}` {context}"),
            other => format!("unexpected {} {context}", describe(&other)),
        })
    }

    /// Query hints `with (sample = true, …)`: accepted and ignored, since
    /// LightTrace answers exactly (no sampling) and newest first already.
    fn hints(&mut self) -> Result<(), TraceQlError> {
        if self.peek() != Some(&Token::Word("with".into())) {
            return Ok(());
        }
        self.next();
        self.expect(Token::LParen, "`(` after `with`")?;
        loop {
            match self.next() {
                Some(Token::Word(_)) => {}
                Some(Token::RParen) => return Ok(()),
                Some(token) => return Err(self.unexpected(token, "in `with (…)`")),
                None => return error("the query ends early: expected `)` to close `with (…)`"),
            }
            self.expect(Token::Op(Op::Eq), "`=` in `with (name = value)`")?;
            match self.next() {
                Some(Token::Word(_) | Token::Number(_) | Token::Str(_)) => {}
                Some(token) => return Err(self.unexpected(token, "in `with (…)`")),
                None => return error("the query ends early: expected a hint value"),
            }
            match self.next() {
                Some(Token::Other(',')) => {}
                Some(Token::RParen) => return Ok(()),
                Some(token) => return Err(self.unexpected(token, "in `with (…)`")),
                None => return error("the query ends early: expected `)` to close `with (…)`"),
            }
        }
    }

    /// An attribute named as a function argument or a `by` key.
    fn attribute_argument(&mut self, context: &str) -> Result<Attribute, TraceQlError> {
        match self.next() {
            Some(Token::Word(word)) => attribute(&word),
            Some(Token::QuotedKey(prefix, key)) => scoped(&prefix, key),
            Some(token) => Err(self.unexpected(token, context)),
            None => error(format!(
                "the query ends early: expected an attribute {context}"
            )),
        }
    }

    /// `rate()`, `quantile_over_time(duration, .5, .99)` …
    fn metrics_function(&mut self) -> Result<MetricsFunction, TraceQlError> {
        let name = match self.next() {
            Some(Token::Word(word)) => word,
            Some(token) => return Err(self.unexpected(token, "where a metrics function should be")),
            None => return error("the query ends early: expected a metrics function after `|`"),
        };
        if !METRICS_FUNCTIONS.contains(&name.as_str()) {
            return error(format!(
                "`{name}` is not a supported metrics function (supported: {})",
                METRICS_FUNCTIONS.join(", ")
            ));
        }
        self.expect(Token::LParen, &format!("`(` after `{name}`"))?;
        if matches!(name.as_str(), "rate" | "count_over_time") {
            self.expect(
                Token::RParen,
                &format!("`)`: `{name}()` takes no arguments"),
            )?;
            return Ok(if name == "rate" {
                MetricsFunction::Rate
            } else {
                MetricsFunction::CountOverTime
            });
        }
        let context = format!("as the argument of `{name}`");
        let attribute = self.attribute_argument(&context)?;
        match &attribute {
            Attribute::Duration
            | Attribute::Span(_)
            | Attribute::Resource(_)
            | Attribute::Any(_) => {}
            other => {
                return error(format!(
                    "`{name}({})`: only `duration` and numeric span or resource attributes can be measured",
                    attribute_text(other)
                ));
            }
        }
        let mut fractions = Vec::new();
        if name == "quantile_over_time" {
            loop {
                match self.next() {
                    Some(Token::Other(',')) => {}
                    Some(Token::RParen) if !fractions.is_empty() => break,
                    Some(token) => return Err(self.unexpected(token, &context)),
                    None => return error("the query ends early: expected `)`"),
                }
                let text = match self.next() {
                    Some(Token::Number(text)) => text,
                    Some(Token::Word(text)) if text.starts_with('.') => text,
                    Some(token) => return Err(self.unexpected(token, "where a quantile should be")),
                    None => return error("the query ends early: expected a quantile"),
                };
                match text.parse::<f64>() {
                    Ok(q) if (0.0..=1.0).contains(&q) => fractions.push(q),
                    _ => {
                        return error(format!("`{text}` is not a quantile between 0 and 1"));
                    }
                }
            }
        } else {
            self.expect(Token::RParen, &format!("`)`: `{name}` takes one attribute"))?;
        }
        Ok(match name.as_str() {
            "quantile_over_time" => MetricsFunction::QuantileOverTime(attribute, fractions),
            "histogram_over_time" => MetricsFunction::HistogramOverTime(attribute),
            "min_over_time" => MetricsFunction::MinOverTime(attribute),
            "max_over_time" => MetricsFunction::MaxOverTime(attribute),
            "avg_over_time" => MetricsFunction::AvgOverTime(attribute),
            _ => MetricsFunction::SumOverTime(attribute),
        })
    }

    /// `a || b || …` over spansets.
    fn spanset_or(&mut self) -> Result<Combination, TraceQlError> {
        let mut left = self.spanset_and()?;
        while self.peek() == Some(&Token::Or) {
            self.next();
            let right = self.spanset_and()?;
            left = Combination::Or(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn spanset_and(&mut self) -> Result<Combination, TraceQlError> {
        let mut left = self.spanset_term()?;
        while self.peek() == Some(&Token::And) {
            self.next();
            let right = self.spanset_term()?;
            left = Combination::And(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn spanset_term(&mut self) -> Result<Combination, TraceQlError> {
        match self.next() {
            Some(Token::LBrace) => {
                let condition = if self.peek() == Some(&Token::RBrace) {
                    None
                } else {
                    Some(self.condition_or()?)
                };
                self.expect(Token::RBrace, "`}` to close the spanset")?;
                self.spansets.push(condition);
                Ok(Combination::Spanset(self.spansets.len() - 1))
            }
            Some(Token::LParen) => {
                let inner = self.spanset_or()?;
                self.expect(Token::RParen, "`)`")?;
                Ok(inner)
            }
            Some(token) => Err(self.unexpected(token, "where a spanset `{ … }` should start")),
            None => error("the query ends early: expected a spanset `{ … }`"),
        }
    }

    fn condition_or(&mut self) -> Result<Condition, TraceQlError> {
        let mut left = self.condition_and()?;
        while self.peek() == Some(&Token::Or) {
            self.next();
            let right = self.condition_and()?;
            left = Condition::Or(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn condition_and(&mut self) -> Result<Condition, TraceQlError> {
        let mut left = self.condition_term()?;
        while self.peek() == Some(&Token::And) {
            self.next();
            let right = self.condition_term()?;
            left = Condition::And(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn condition_term(&mut self) -> Result<Condition, TraceQlError> {
        match self.next() {
            Some(Token::LParen) => {
                let inner = self.condition_or()?;
                self.expect(Token::RParen, "`)`")?;
                Ok(inner)
            }
            Some(Token::Word(word)) if word == "true" || word == "false" => {
                Ok(Condition::Literal(word == "true"))
            }
            Some(Token::Word(word)) => {
                let attribute = attribute(&word)?;
                self.comparison(attribute)
            }
            Some(Token::QuotedKey(prefix, key)) => {
                let attribute = scoped(&prefix, key)?;
                self.comparison(attribute)
            }
            Some(token) => Err(self.unexpected(token, "where a condition should start")),
            None => error("the query ends early: expected a condition"),
        }
    }

    fn comparison(&mut self, attribute: Attribute) -> Result<Condition, TraceQlError> {
        let op = match self.next() {
            Some(Token::Op(op)) => op,
            Some(Token::RBrace) | Some(Token::And) | Some(Token::Or) | None => {
                return error(format!(
                    "`{}` alone is not a condition: compare it (`= \"…\"`); existence checks (`!= nil`) are not supported",
                    attribute_text(&attribute)
                ));
            }
            Some(token) => return Err(self.unexpected(token, "where an operator should be")),
        };
        if self.peek() == Some(&Token::Word("nil".into())) {
            self.next();
            return match op {
                Op::Ne => Ok(Condition::Exists(attribute, true)),
                Op::Eq => Ok(Condition::Exists(attribute, false)),
                other => error(format!(
                    "`{} {other} nil`: nil is only compared with `=` and `!=`",
                    attribute_text(&attribute)
                )),
            };
        }
        let value = match self.next() {
            Some(Token::Str(s)) => Static::String(s),
            Some(Token::Number(n)) => number(&n)?,
            Some(Token::Word(word)) => keyword(&word)?,
            Some(token) => return Err(self.unexpected(token, "where a value should be")),
            None => {
                return error(format!(
                    "the query ends early: expected a value after `{op}`"
                ));
            }
        };
        check_types(&attribute, op, &value)?;
        Ok(Condition::Compare(attribute, op, value))
    }
}

fn describe(token: &Token) -> String {
    match token {
        Token::LBrace => "`{`".into(),
        Token::RBrace => "`}`".into(),
        Token::LParen => "`(`".into(),
        Token::RParen => "`)`".into(),
        Token::And => "`&&`".into(),
        Token::Or => "`||`".into(),
        Token::Other(c) => format!("`{c}`"),
        Token::QuotedKey(prefix, key) => format!("`{prefix}{key:?}`"),
        other => format!("{other:?}"),
    }
}

fn attribute_text(attribute: &Attribute) -> String {
    match attribute {
        Attribute::Span(k) => format!("span.{k}"),
        Attribute::Resource(k) => format!("resource.{k}"),
        Attribute::Any(k) => format!(".{k}"),
        Attribute::Name => "name".into(),
        Attribute::Status => "status".into(),
        Attribute::StatusMessage => "statusMessage".into(),
        Attribute::Kind => "kind".into(),
        Attribute::Duration => "duration".into(),
        Attribute::RootService => "trace:rootService".into(),
        Attribute::RootName => "trace:rootName".into(),
        Attribute::TraceDuration => "trace:duration".into(),
        Attribute::NestedSetParent => "nestedSetParent".into(),
    }
}

fn scoped(prefix: &str, key: String) -> Result<Attribute, TraceQlError> {
    if key.is_empty() {
        return error(format!("`{prefix}` needs an attribute name"));
    }
    match prefix {
        "span." => Ok(Attribute::Span(key)),
        "resource." => Ok(Attribute::Resource(key)),
        "." => Ok(Attribute::Any(key)),
        other => error(format!(
            "the scope `{}` is not supported (use span., resource. or .)",
            other.trim_end_matches('.')
        )),
    }
}

fn attribute(word: &str) -> Result<Attribute, TraceQlError> {
    let intrinsic = match word {
        "name" | "span:name" => Some(Attribute::Name),
        "status" | "span:status" => Some(Attribute::Status),
        "statusMessage" | "span:statusMessage" => Some(Attribute::StatusMessage),
        "kind" | "span:kind" => Some(Attribute::Kind),
        "duration" | "span:duration" => Some(Attribute::Duration),
        "rootServiceName" | "trace:rootService" => Some(Attribute::RootService),
        "rootName" | "trace:rootName" => Some(Attribute::RootName),
        "traceDuration" | "trace:duration" => Some(Attribute::TraceDuration),
        "nestedSetParent" => Some(Attribute::NestedSetParent),
        _ => None,
    };
    if let Some(intrinsic) = intrinsic {
        return Ok(intrinsic);
    }
    if let Some(key) = word.strip_prefix("span.") {
        return scoped("span.", key.to_owned());
    }
    if let Some(key) = word.strip_prefix("resource.") {
        return scoped("resource.", key.to_owned());
    }
    if let Some(key) = word.strip_prefix('.') {
        return scoped(".", key.to_owned());
    }
    if let Some((scope, _)) = word.split_once(['.', ':']) {
        return error(format!(
            "`{word}`: the scope `{scope}` is not supported (supported: span., resource., ., and the intrinsics name, status, kind, duration, statusMessage, trace:rootService, trace:rootName, trace:duration)"
        ));
    }
    error(format!(
        "`{word}` is not an attribute: write span.{word}, resource.{word} or .{word}, or an intrinsic (name, status, kind, duration, statusMessage, trace:rootService, trace:rootName, trace:duration)"
    ))
}

fn keyword(word: &str) -> Result<Static, TraceQlError> {
    Ok(match word {
        "true" => Static::Bool(true),
        "false" => Static::Bool(false),
        "error" => Static::Status("error"),
        "ok" => Static::Status("ok"),
        "unset" => Static::Status("unset"),
        "server" | "client" | "producer" | "consumer" | "internal" | "unspecified" => {
            Static::Kind(match word {
                "server" => "server",
                "client" => "client",
                "producer" => "producer",
                "consumer" => "consumer",
                "internal" => "internal",
                _ => "unspecified",
            })
        }
        other => {
            return error(format!(
                "`{other}` is not a value: quote strings (\"{other}\")"
            ));
        }
    })
}

/// A number or a duration literal.
fn number(text: &str) -> Result<Static, TraceQlError> {
    if let Ok(int) = text.parse::<i64>() {
        return Ok(Static::Int(int));
    }
    if let Ok(float) = text.parse::<f64>()
        && float.is_finite()
    {
        return Ok(Static::Float(float));
    }
    parse_duration(text).map(Static::Duration).ok_or_else(|| {
        TraceQlError(format!(
            "`{text}` is neither a number nor a duration (100ms, 1.5s, 2m, 1h, 10us, 100ns)"
        ))
    })
}

/// `1.5s`, `100ms`, `2m`, `1h30m`, `10us`, `10µs`, `100ns` as nanoseconds.
pub fn parse_duration(text: &str) -> Option<i64> {
    let (negative, mut rest) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    if rest.is_empty() {
        return None;
    }
    let mut total: f64 = 0.0;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if digits == 0 {
            return None;
        }
        let value: f64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "ns" => 1.0,
            "us" | "µs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return None,
        };
        rest = &rest[unit_len..];
        total += value * scale;
    }
    if !total.is_finite() || total > i64::MAX as f64 {
        return None;
    }
    let ns = total.round() as i64;
    Some(if negative { -ns } else { ns })
}

fn check_types(attribute: &Attribute, op: Op, value: &Static) -> Result<(), TraceQlError> {
    let name = attribute_text(attribute);
    let ordering = matches!(op, Op::Gt | Op::Ge | Op::Lt | Op::Le);
    let regex = matches!(op, Op::Regex | Op::NotRegex);
    let mismatch = || {
        error(format!(
            "`{name} {op} {value}` compares values of different types"
        ))
    };
    match attribute {
        Attribute::Duration | Attribute::TraceDuration => match value {
            Static::Duration(_) if !regex => Ok(()),
            _ => mismatch(),
        },
        Attribute::Status => match value {
            Static::Status(_) if matches!(op, Op::Eq | Op::Ne) => Ok(()),
            _ => mismatch(),
        },
        Attribute::Kind => match value {
            Static::Kind(_) if matches!(op, Op::Eq | Op::Ne) => Ok(()),
            _ => mismatch(),
        },
        Attribute::Name
        | Attribute::StatusMessage
        | Attribute::RootService
        | Attribute::RootName => match value {
            Static::String(_) => Ok(()),
            _ => mismatch(),
        },
        Attribute::NestedSetParent => match value {
            // Every span with a parent has nestedSetParent >= 1 and a root
            // has -1, so a comparison with a value <= 0 is a root test.
            Static::Int(v) if *v <= 0 && !regex => Ok(()),
            _ => error(format!(
                "`{name} {op} {value}`: nestedSetParent is only supported in root tests such as `nestedSetParent < 0`"
            )),
        },
        Attribute::Span(_) | Attribute::Resource(_) | Attribute::Any(_) => match value {
            Static::String(_) => Ok(()),
            Static::Int(_) | Static::Float(_) | Static::Duration(_) if !regex => Ok(()),
            Static::Bool(_) | Static::Status(_) | Static::Kind(_)
                if matches!(op, Op::Eq | Op::Ne) =>
            {
                Ok(())
            }
            _ if ordering || regex => mismatch(),
            _ => mismatch(),
        },
    }
    .and_then(|()| match (op, value) {
        (Op::Regex | Op::NotRegex, Static::String(pattern)) => regex::Regex::new(pattern)
            .map(|_| ())
            .map_err(|err| TraceQlError(format!("invalid regular expression {pattern:?}: {err}"))),
        _ => Ok(()),
    })
}

// ---------------------------------------------------------------- planner

/// SQL pieces for one query: a boolean expression per spanset over the span
/// row `s` (and the trace row `t` when [`Plan::needs_trace`]), with their
/// parameter values.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// Per spanset, its condition as SQL (`TRUE` for `{}`).
    pub spanset_sql: Vec<String>,
    /// The trace-level match over the per-trace flags `m0`, `m1`, … (each
    /// `bool_or` of its spanset's condition): `m0 AND (m1 OR m2)`.
    pub trace_sql: String,
    /// `$v0`, `$v1`, … with their values.
    pub params: Vec<(String, ScalarValue)>,
    /// Conditions read `t.root_service`, `t.root_name`, `t.duration_ns`.
    pub needs_trace: bool,
    /// The attributes the conditions read (for search results), deduplicated.
    pub attributes: Vec<Attribute>,
}

/// The per-trace table `t` (`trace_id`, `root_service`, `root_name`,
/// `duration_ns`) over the spans that `filter` selects: the root is the
/// earliest span without a parent, else the earliest span; the duration runs
/// from the first start to the last end.
pub fn trace_table_sql(filter: &str) -> String {
    format!(
        "t AS (SELECT trace_id, \
           first_value(service_name ORDER BY parent_span_id IS NOT NULL, start_time) AS root_service, \
           first_value(name ORDER BY parent_span_id IS NOT NULL, start_time) AS root_name, \
           CAST(max(end_time) AS BIGINT) - CAST(min(start_time) AS BIGINT) AS duration_ns \
         FROM spans WHERE {filter} GROUP BY trace_id)"
    )
}

/// A SQL string literal: `'…'` with quotes doubled.
pub fn sql_string(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// Translates `query` into SQL pieces.
pub fn plan(query: &Query) -> Plan {
    let mut planner = Planner::default();
    let spanset_sql = query
        .spansets
        .iter()
        .map(|condition| match condition {
            None => "TRUE".to_owned(),
            Some(condition) => planner.condition(condition),
        })
        .collect();
    let trace_sql = combination_sql(&query.combination);
    Plan {
        spanset_sql,
        trace_sql,
        params: planner.params,
        needs_trace: planner.needs_trace,
        attributes: planner.attributes,
    }
}

fn combination_sql(combination: &Combination) -> String {
    match combination {
        Combination::Spanset(i) => format!("m{i}"),
        Combination::And(a, b) => format!("({} AND {})", combination_sql(a), combination_sql(b)),
        Combination::Or(a, b) => format!("({} OR {})", combination_sql(a), combination_sql(b)),
    }
}

#[derive(Default)]
struct Planner {
    params: Vec<(String, ScalarValue)>,
    needs_trace: bool,
    attributes: Vec<Attribute>,
}

impl Planner {
    fn param(&mut self, value: ScalarValue) -> String {
        let name = format!("v{}", self.params.len());
        let placeholder = format!("${name}");
        self.params.push((name, value));
        placeholder
    }

    fn condition(&mut self, condition: &Condition) -> String {
        match condition {
            Condition::And(a, b) => format!("({} AND {})", self.condition(a), self.condition(b)),
            Condition::Or(a, b) => format!("({} OR {})", self.condition(a), self.condition(b)),
            Condition::Compare(attribute, op, value) => self.compare(attribute, *op, value),
            Condition::Exists(attribute, exists) => {
                self.note(attribute);
                let column = match attribute {
                    Attribute::NestedSetParent => "s.span_id".to_owned(),
                    other => column_sql(other),
                };
                format!("({column} IS {}NULL)", if *exists { "NOT " } else { "" })
            }
            Condition::Literal(value) => value.to_string().to_uppercase(),
        }
    }

    /// Records what a condition reads.
    fn note(&mut self, attribute: &Attribute) {
        if attribute.is_trace_level() {
            self.needs_trace = true;
        }
        if attribute.result_key().is_some() && !self.attributes.contains(attribute) {
            self.attributes.push(attribute.clone());
        }
    }

    fn compare(&mut self, attribute: &Attribute, op: Op, value: &Static) -> String {
        self.note(attribute);
        if *attribute == Attribute::NestedSetParent {
            let Static::Int(v) = value else {
                unreachable!("root tests compare with integers (check_types)")
            };
            // A root has -1; any other span a value >= 1, and v <= 0, so the
            // comparison has one answer for all of them.
            let holds = |x: i64| match op {
                Op::Eq => x == *v,
                Op::Ne => x != *v,
                Op::Gt => x > *v,
                Op::Ge => x >= *v,
                Op::Lt => x < *v,
                Op::Le => x <= *v,
                Op::Regex | Op::NotRegex => unreachable!("refused by check_types"),
            };
            return match (holds(-1), holds(1)) {
                (true, true) => "TRUE".to_owned(),
                (false, false) => "FALSE".to_owned(),
                (true, false) => "(s.parent_span_id IS NULL)".to_owned(),
                (false, true) => "(s.parent_span_id IS NOT NULL)".to_owned(),
            };
        }
        let column = column_sql(attribute);
        let sql_op = match op {
            Op::Eq => "=",
            Op::Ne => "<>",
            Op::Gt => ">",
            Op::Ge => ">=",
            Op::Lt => "<",
            Op::Le => "<=",
            Op::Regex | Op::NotRegex => {
                let Static::String(pattern) = value else {
                    unreachable!("regex values are strings (check_types)")
                };
                // Fully anchored, as Tempo's matchers are.
                let placeholder = self.param(ScalarValue::Utf8(Some(format!("^(?:{pattern})$"))));
                let matches = format!("regexp_like({column}, {placeholder})");
                return if op == Op::Regex {
                    format!("coalesce({matches}, FALSE)")
                } else {
                    format!("({column} IS NOT NULL AND NOT {matches})")
                };
            }
        };
        let numeric = matches!(
            attribute,
            Attribute::Span(_) | Attribute::Resource(_) | Attribute::Any(_)
        ) && matches!(
            value,
            Static::Int(_) | Static::Float(_) | Static::Duration(_)
        );
        let placeholder = match value {
            Static::String(s) => self.param(ScalarValue::Utf8(Some(s.clone()))),
            Static::Int(i) if numeric => self.param(ScalarValue::Float64(Some(*i as f64))),
            Static::Float(x) => self.param(ScalarValue::Float64(Some(*x))),
            Static::Int(i) => self.param(ScalarValue::Int64(Some(*i))),
            Static::Duration(ns) if numeric => self.param(ScalarValue::Float64(Some(*ns as f64))),
            Static::Duration(ns) => self.param(ScalarValue::Int64(Some(*ns))),
            Static::Bool(b) => self.param(ScalarValue::Utf8(Some(b.to_string()))),
            Static::Status(s) | Static::Kind(s) => {
                self.param(ScalarValue::Utf8(Some((*s).to_owned())))
            }
        };
        if numeric {
            format!("coalesce(try_cast({column} AS DOUBLE) {sql_op} {placeholder}, FALSE)")
        } else {
            format!("coalesce({column} {sql_op} {placeholder}, FALSE)")
        }
    }
}

/// The SQL reading `attribute` of the span row `s` (or of its trace row `t`
/// for the trace-level intrinsics).
pub fn column_sql(attribute: &Attribute) -> String {
    match attribute {
        Attribute::Name => "s.name".to_owned(),
        Attribute::Status => "s.status_code".to_owned(),
        Attribute::StatusMessage => "s.status_message".to_owned(),
        Attribute::Kind => "s.kind".to_owned(),
        Attribute::Duration => "s.duration_ns".to_owned(),
        Attribute::RootService => "t.root_service".to_owned(),
        Attribute::RootName => "t.root_name".to_owned(),
        Attribute::TraceDuration => "t.duration_ns".to_owned(),
        Attribute::NestedSetParent => {
            "CASE WHEN s.parent_span_id IS NULL THEN -1 ELSE NULL END".to_owned()
        }
        other => attribute_sql(other),
    }
}

/// The SQL reading an attribute of the span row `s`; `service.name` of the
/// resource is the `service_name` column.
pub fn attribute_sql(attribute: &Attribute) -> String {
    match attribute {
        Attribute::Resource(key) | Attribute::Any(key) if key == "service.name" => {
            "s.service_name".to_owned()
        }
        Attribute::Span(key) => format!("s.attributes[{}]", sql_string(key)),
        Attribute::Resource(key) => format!("s.resource_attributes[{}]", sql_string(key)),
        Attribute::Any(key) => format!(
            "coalesce(s.attributes[{key}], s.resource_attributes[{key}])",
            key = sql_string(key)
        ),
        _ => unreachable!("only attributes have attribute SQL"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(text: &str) -> String {
        parse(text).unwrap_err().0
    }

    #[test]
    fn parses_what_grafana_sends() {
        let query = parse("{}").unwrap();
        assert_eq!(query.spansets, vec![None]);
        assert_eq!(query.combination, Combination::Spanset(0));

        let query = parse(r#"{resource.service.name="frontend" && name="GET /cart"}"#).unwrap();
        assert_eq!(
            query.spansets[0],
            Some(Condition::And(
                Box::new(Condition::Compare(
                    Attribute::Resource("service.name".into()),
                    Op::Eq,
                    Static::String("frontend".into())
                )),
                Box::new(Condition::Compare(
                    Attribute::Name,
                    Op::Eq,
                    Static::String("GET /cart".into())
                )),
            ))
        );

        let query = parse(
            r#"{ span.http.status_code >= 500 || status = error } && { .db.system =~ "post.*" }"#,
        )
        .unwrap();
        assert_eq!(query.spansets.len(), 2);
        assert_eq!(
            query.combination,
            Combination::And(
                Box::new(Combination::Spanset(0)),
                Box::new(Combination::Spanset(1))
            )
        );

        let query =
            parse(r#"({kind = server} || {duration > 1.5s}) && {trace:rootService != "x"}"#)
                .unwrap();
        assert_eq!(query.spansets.len(), 3);
        assert!(matches!(query.combination, Combination::And(..)));
        assert_eq!(
            query.spansets[1],
            Some(Condition::Compare(
                Attribute::Duration,
                Op::Gt,
                Static::Duration(1_500_000_000)
            ))
        );

        let query = parse(r#"{ span."my key" = "a\"b" }"#).unwrap();
        assert_eq!(
            query.spansets[0],
            Some(Condition::Compare(
                Attribute::Span("my key".into()),
                Op::Eq,
                Static::String("a\"b".into())
            ))
        );
    }

    #[test]
    fn precedence_and_before_or() {
        let query = parse("{ .a = 1 || .b = 2 && .c = 3 }").unwrap();
        let Some(Condition::Or(_, right)) = &query.spansets[0] else {
            panic!("{:?}", query.spansets[0]);
        };
        assert!(matches!(**right, Condition::And(..)));
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("100ms"), Some(100_000_000));
        assert_eq!(parse_duration("1.5s"), Some(1_500_000_000));
        assert_eq!(parse_duration("1h30m"), Some(5_400_000_000_000));
        assert_eq!(parse_duration("10us"), Some(10_000));
        assert_eq!(parse_duration("10µs"), Some(10_000));
        assert_eq!(parse_duration("7ns"), Some(7));
        assert_eq!(parse_duration("5"), None);
        assert_eq!(parse_duration("5x"), None);
        assert_eq!(parse_duration("ms"), None);
    }

    #[test]
    fn refuses_unsupported_constructs_by_name() {
        assert!(refused("{ } | count() > 2").contains("pipelines"));
        assert!(refused("{ .a = 1 } >> { .b = 2 }").contains("structural operators (`>>`"));
        assert!(refused("{ .a = 1 } > { .b = 2 }").contains("unexpected `>`"));
        assert!(refused("{ .a = 1 } ~ { .b = 2 }").contains("structural operators (`~`"));
        assert!(refused("{ !(.a = 1) }").contains("negation"));
        assert!(refused("{ event.name = \"x\" }").contains("scope `event`"));
        assert!(refused("{ foo = \"x\" }").contains("not an attribute"));
        assert!(refused("{ duration > \"x\" }").contains("different types"));
        assert!(refused("{ status = \"error\" }").contains("different types"));
        assert!(refused("{ .a = bar }").contains("quote strings"));
        assert!(refused("{ .a =~ \"(\" }").contains("invalid regular expression"));
        assert!(refused("{ .a = \"x }").contains("not closed"));
        assert!(refused("{ .a = 1 ").contains("ends early"));
        assert!(refused("").contains("empty"));
        assert!(refused("{ .a }").contains("alone is not a condition"));
        assert!(refused("{ .a = 1 + 2 }").contains("arithmetic"));
    }

    #[test]
    fn plans_values_as_parameters() {
        let plan =
            plan(&parse(r#"{ span.x = "it's" && duration >= 10ms } || { .n > 3 }"#).unwrap());
        assert_eq!(
            plan.spanset_sql[0],
            "(coalesce(s.attributes['x'] = $v0, FALSE) AND coalesce(s.duration_ns >= $v1, FALSE))"
        );
        assert_eq!(
            plan.spanset_sql[1],
            "coalesce(try_cast(coalesce(s.attributes['n'], s.resource_attributes['n']) AS DOUBLE) > $v2, FALSE)"
        );
        assert_eq!(plan.trace_sql, "(m0 OR m1)");
        assert_eq!(plan.params[0].1, ScalarValue::Utf8(Some("it's".into())));
        assert_eq!(plan.params[1].1, ScalarValue::Int64(Some(10_000_000)));
        assert_eq!(plan.params[2].1, ScalarValue::Float64(Some(3.0)));
        assert!(!plan.needs_trace);

        let plan = plan_of(r#"{ resource.service.name = "a" && trace:rootName =~ "GET.*" }"#);
        assert!(plan.spanset_sql[0].starts_with("(coalesce(s.service_name = $v0"));
        assert!(plan.spanset_sql[0].contains("regexp_like(t.root_name, $v1)"));
        assert_eq!(
            plan.params[1].1,
            ScalarValue::Utf8(Some("^(?:GET.*)$".into()))
        );
        assert!(plan.needs_trace);

        // A key with a quote stays inside its SQL string.
        let plan = plan_of(r#"{ span."a'b" = "x" }"#);
        assert!(plan.spanset_sql[0].contains("s.attributes['a''b']"));
    }

    #[test]
    fn parses_metrics_queries() {
        let query = parse_metrics(
            r#"{ resource.service.name = "a" } | quantile_over_time(duration, .5, 0.9, 1) by (resource.service.name, span.http.route)"#,
        )
        .unwrap();
        assert_eq!(
            query.function,
            MetricsFunction::QuantileOverTime(Attribute::Duration, vec![0.5, 0.9, 1.0])
        );
        assert_eq!(
            query.by,
            vec![
                Attribute::Resource("service.name".into()),
                Attribute::Span("http.route".into())
            ]
        );
        let query = parse_metrics("{} | rate() with (sample = true, exemplars = 5)").unwrap();
        assert_eq!(query.function, MetricsFunction::Rate);
        assert!(query.by.is_empty());
        let query = parse_metrics("{a.b = 1} || {} | histogram_over_time(span.size)");
        assert!(query.unwrap_err().0.contains("scope `a`"));
        let query = parse_metrics("{ .x = 1 } && { } | avg_over_time(.bytes)").unwrap();
        assert_eq!(query.filter.spansets.len(), 2);
        assert_eq!(
            query.function,
            MetricsFunction::AvgOverTime(Attribute::Any("bytes".into()))
        );
        assert!(
            parse_metrics("{} | rate(duration)")
                .unwrap_err()
                .0
                .contains("takes no arguments")
        );
        assert!(parse_metrics("{} | rate() by ()").is_err());
        assert!(
            parse_metrics("{} | rate() | topk(2)")
                .unwrap_err()
                .0
                .contains("second-stage")
        );
        assert!(
            parse_metrics("{} | count()")
                .unwrap_err()
                .0
                .contains("not a supported metrics function")
        );
    }

    #[test]
    fn existence_literals_and_root_tests() {
        let plan = plan_of("{ nestedSetParent < 0 && true && span.a != nil && resource.b = nil }");
        assert_eq!(
            plan.spanset_sql[0],
            "((((s.parent_span_id IS NULL) AND TRUE) AND (s.attributes['a'] IS NOT NULL)) AND (s.resource_attributes['b'] IS NULL))"
        );
        assert_eq!(
            plan_of("{ nestedSetParent >= 0 }").spanset_sql[0],
            "(s.parent_span_id IS NOT NULL)"
        );
        assert_eq!(
            plan_of("{ nestedSetParent = -1 }").spanset_sql[0],
            "(s.parent_span_id IS NULL)"
        );
        assert!(refused("{ nestedSetParent = 5 }").contains("root tests"));
        assert!(refused("{ .a > nil }").contains("only compared with `=` and `!=`"));
        // Hints are accepted (and ignored) in searches too.
        assert!(parse("{} with (most_recent = true)").is_ok());
    }

    fn plan_of(text: &str) -> Plan {
        plan(&parse(text).unwrap())
    }
}
