//! Rule lookup speed (no DPDK): the decision for a flow key over rule tables of growing size.
//! Run with `cargo bench --bench pipeline`.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use ferrovs_config::flow::{OfPort, PortMap, parse_flow};
use ferrovs_switch::ofproto::{Pipeline, PortTable};
use ferrovs_switch::packet::{FlowKey, PortIdx};

/// Ports p0..p63 numbered 1..64.
struct Ports;
impl PortMap for Ports {
    fn by_name(&self, name: &str) -> Option<OfPort> {
        name.strip_prefix('p')?
            .parse::<u16>()
            .ok()
            .filter(|n| *n < 64)
            .map(|n| n + 1)
    }
    fn has_number(&self, n: OfPort) -> bool {
        (1..=64).contains(&n)
    }
    fn name_of(&self, _: OfPort) -> Option<&str> {
        None
    }
}

fn pipeline(rules: usize) -> Pipeline {
    let rules: Vec<_> = (0..rules)
        .map(|i| {
            parse_flow(
                &format!(
                    "priority={},in_port=p{},actions=output:p{}",
                    i % 7,
                    i % 64,
                    (i + 1) % 64
                ),
                &Ports,
            )
            .unwrap()
        })
        .collect();
    Pipeline::compile(&rules, &PortTable::new((1..=64).collect())).unwrap()
}

fn lookup(c: &mut Criterion) {
    for n in [1, 16, 64] {
        let p = pipeline(n);
        let keys: Vec<FlowKey> = (0..32)
            .map(|i| FlowKey {
                in_port: PortIdx(i % 64),
            })
            .collect();
        c.bench_function(&format!("lookup_32_keys_{n}_rules"), |b| {
            b.iter(|| {
                for k in &keys {
                    black_box(p.lookup(black_box(k)));
                }
            })
        });
    }
}

fn parse(c: &mut Criterion) {
    c.bench_function("parse_flow", |b| {
        b.iter(|| {
            parse_flow(
                black_box("priority=10,in_port=p3,actions=output:p1,output:p2"),
                &Ports,
            )
            .unwrap()
        })
    });
}

criterion_group!(benches, lookup, parse);
criterion_main!(benches);
