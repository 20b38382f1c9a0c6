//! The `ovs-ofctl add-flow` parser: `field=value` pairs separated by commas or spaces, then
//! `actions=` and the rest of the line.

use super::{Action, DEFAULT_PRIORITY, FieldMatch, FlowRule, OFPORT_MAX, OfPort, PortMap};

/// Parses one rule. The error is one line naming the offending part.
pub fn parse_flow(text: &str, ports: &dyn PortMap) -> Result<FlowRule, String> {
    let (match_part, actions_part) = split_actions(text)?;
    let mut rule = FlowRule {
        table: 0,
        priority: DEFAULT_PRIORITY,
        cookie: 0,
        matches: Vec::new(),
        actions: Vec::new(),
    };
    let mut seen: Vec<&str> = Vec::new();
    for token in split_list(match_part)? {
        let (name, value) = match token.split_once('=') {
            Some((n, v)) => (n.trim(), Some(v.trim())),
            None => (token, None),
        };
        if seen.contains(&name) {
            return Err(format!("{name}: given twice"));
        }
        seen.push(name);
        let value = || {
            value
                .filter(|v| !v.is_empty())
                .ok_or_else(|| format!("{name}: missing value"))
        };
        match name {
            "priority" => rule.priority = parse_number(value()?, u16::MAX.into(), name)? as u16,
            "table" => rule.table = parse_number(value()?, 254, name)? as u8,
            "cookie" => rule.cookie = parse_cookie(value()?)?,
            "in_port" => rule
                .matches
                .push(FieldMatch::InPort(parse_port(value()?, ports, name)?)),
            _ => return Err(format!("unknown field {name:?}")),
        }
    }
    rule.actions = parse_actions(actions_part, ports)?;
    Ok(rule)
}

/// Splits `... actions=...` into the match part and the action list (required, last).
fn split_actions(text: &str) -> Result<(&str, &str), String> {
    let mut depth = 0i32;
    let bytes = text.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        match b {
            b'(' | b'[' => depth += 1,
            b')' | b']' => depth -= 1,
            b'a' if depth == 0 && text[i..].starts_with("actions") => {
                let boundary = i == 0 || matches!(bytes[i - 1], b',' | b' ' | b'\t');
                let rest = text[i + "actions".len()..].trim_start();
                if boundary && let Some(actions) = rest.strip_prefix('=') {
                    return Ok((text[..i].trim_end_matches([',', ' ', '\t']), actions.trim()));
                }
            }
            _ => {}
        }
    }
    Err("missing actions= (every rule needs one; use actions=drop to drop)".into())
}

/// Splits a comma- or space-separated list, keeping parenthesised groups whole.
fn split_list(text: &str) -> Result<Vec<&str>, String> {
    let (mut out, mut depth, mut start) = (Vec::new(), 0i32, 0usize);
    for (i, c) in text.char_indices() {
        match c {
            '(' | '[' => depth += 1,
            ')' | ']' => {
                depth -= 1;
                if depth < 0 {
                    return Err(format!("unbalanced {c:?} in {text:?}"));
                }
            }
            ',' | ' ' | '\t' if depth == 0 => {
                if !text[start..i].trim().is_empty() {
                    out.push(text[start..i].trim());
                }
                start = i + 1;
            }
            _ => {}
        }
    }
    if depth != 0 {
        return Err(format!("unbalanced parentheses in {text:?}"));
    }
    if !text[start..].trim().is_empty() {
        out.push(text[start..].trim());
    }
    Ok(out)
}

/// A decimal or `0x` hexadecimal number no larger than `max`.
fn parse_number(text: &str, max: u64, field: &str) -> Result<u64, String> {
    let parsed = match text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => text.parse::<u64>(),
    };
    match parsed {
        Ok(n) if n <= max => Ok(n),
        Ok(n) => Err(format!("{field}: {n} is out of range (0 to {max})")),
        Err(_) => Err(format!("{field}: {text:?} is not a number")),
    }
}

fn parse_cookie(text: &str) -> Result<u64, String> {
    if text.contains('/') {
        return Err(
            "cookie: a cookie mask only makes sense when modifying or deleting flows".into(),
        );
    }
    parse_number(text, u64::MAX, "cookie")
}

/// A port by name or by number; either must exist.
fn parse_port(text: &str, ports: &dyn PortMap, field: &str) -> Result<OfPort, String> {
    if text.chars().all(|c| c.is_ascii_digit()) || text.starts_with("0x") {
        let n = parse_number(text, u64::from(OFPORT_MAX), field)? as OfPort;
        return if ports.has_number(n) {
            Ok(n)
        } else {
            Err(format!("{field}: unknown port {n}"))
        };
    }
    ports
        .by_name(text)
        .ok_or_else(|| format!("{field}: unknown port {text:?}"))
}

fn parse_actions(text: &str, ports: &dyn PortMap) -> Result<Vec<Action>, String> {
    let tokens = split_list(text)?;
    if tokens.is_empty() {
        return Ok(Vec::new());
    }
    let mut actions = Vec::with_capacity(tokens.len());
    for token in &tokens {
        let (name, arg) = match token.find([':', '=', '(']) {
            Some(i) if token.as_bytes()[i] == b'(' => {
                let inner = &token[i + 1..];
                (
                    token[..i].trim(),
                    Some(inner.strip_suffix(')').unwrap_or(inner).trim()),
                )
            }
            Some(i) => (token[..i].trim(), Some(token[i + 1..].trim())),
            None => (token.trim(), None),
        };
        let action = match (name, arg) {
            ("drop", None) => Action::Drop,
            ("output", Some(port)) => Action::Output(parse_port(
                port.trim_start_matches("port="),
                ports,
                "output",
            )?),
            ("output", None) => return Err("output: missing port (output:PORT)".into()),
            // A bare port name or number is ovs-ofctl's shorthand for output to it.
            (bare, None)
                if ports.by_name(bare).is_some() || bare.chars().all(|c| c.is_ascii_digit()) =>
            {
                Action::Output(parse_port(bare, ports, "output")?)
            }
            _ => return Err(format!("unknown action {token:?}")),
        };
        actions.push(action);
    }
    if actions.contains(&Action::Drop) && actions.len() > 1 {
        return Err("drop must be the only action".into());
    }
    Ok(actions)
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Ports;
    impl PortMap for Ports {
        fn by_name(&self, name: &str) -> Option<OfPort> {
            match name {
                "p0" => Some(1),
                "p1" => Some(2),
                "uplink" => Some(10),
                _ => None,
            }
        }
        fn has_number(&self, n: OfPort) -> bool {
            matches!(n, 1 | 2 | 10)
        }
        fn name_of(&self, n: OfPort) -> Option<&str> {
            match n {
                1 => Some("p0"),
                2 => Some("p1"),
                10 => Some("uplink"),
                _ => None,
            }
        }
    }

    fn parse(text: &str) -> Result<FlowRule, String> {
        parse_flow(text, &Ports)
    }

    #[test]
    fn parses_the_basic_forms() {
        let r = parse("priority=10,in_port=p0,actions=output:p1").unwrap();
        assert_eq!((r.table, r.priority, r.cookie), (0, 10, 0));
        assert_eq!(r.matches, vec![FieldMatch::InPort(1)]);
        assert_eq!(r.actions, vec![Action::Output(2)]);

        let r =
            parse("table=3 cookie=0x1f priority=0 in_port=10 actions=output:1,output:p1").unwrap();
        assert_eq!((r.table, r.priority, r.cookie), (3, 0, 0x1f));
        assert_eq!(r.actions, vec![Action::Output(1), Action::Output(2)]);

        assert_eq!(parse("actions=drop").unwrap().actions, vec![Action::Drop]);
        assert_eq!(parse("in_port=p1,actions=").unwrap().actions, vec![]);
        assert_eq!(
            parse("actions=p1,2,output(port=uplink)").unwrap().actions,
            vec![Action::Output(2), Action::Output(2), Action::Output(10)]
        );
        assert_eq!(
            parse("in_port=p0 actions=output:p1").unwrap().priority,
            DEFAULT_PRIORITY
        );
    }

    #[test]
    fn prints_what_it_parsed() {
        for text in [
            "priority=10,in_port=p0 actions=output:p1",
            "cookie=0x1f, table=3, priority=0,in_port=uplink actions=output:p0,output:p1",
            "priority=32768 actions=drop",
        ] {
            let rule = parse(text).unwrap();
            assert_eq!(rule.display(&Ports).to_string(), text);
            assert_eq!(parse(&rule.display(&Ports).to_string()).unwrap(), rule);
        }
    }

    #[test]
    fn rejects_bad_rules_with_the_reason() {
        for (text, reason) in [
            ("priority=10,in_port=p0", "missing actions="),
            (
                "priority=70000,actions=drop",
                "priority: 70000 is out of range (0 to 65535)",
            ),
            (
                "priority=ten,actions=drop",
                "priority: \"ten\" is not a number",
            ),
            ("priority=,actions=drop", "priority: missing value"),
            (
                "table=255,actions=drop",
                "table: 255 is out of range (0 to 254)",
            ),
            ("in_port=p9,actions=drop", "in_port: unknown port \"p9\""),
            ("in_port=7,actions=drop", "in_port: unknown port 7"),
            (
                "in_port=p0,actions=output:p9",
                "output: unknown port \"p9\"",
            ),
            ("in_port=p0,actions=output:99", "output: unknown port 99"),
            ("in_port=p0,actions=output", "output: missing port"),
            ("nw_ttl=3,actions=drop", "unknown field \"nw_ttl\""),
            ("in_port=p0,in_port=p1,actions=drop", "in_port: given twice"),
            ("actions=flibble", "unknown action \"flibble\""),
            ("actions=drop,output:p1", "drop must be the only action"),
            ("cookie=1/1,actions=drop", "cookie mask"),
            ("actions=output(port=p1", "unbalanced"),
        ] {
            let err = parse(text).unwrap_err();
            assert!(
                err.contains(reason),
                "{text:?} gave {err:?}, wanted {reason:?}"
            );
        }
    }
}
