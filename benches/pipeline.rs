//! Slow-path speed (no DPDK): classifier lookups and full OpenFlow translations over rule tables
//! of growing size and mask count. Run with `cargo bench --bench pipeline`.

use std::hint::black_box;
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
mod common;

use common::Ports;
use ferrovs_config::flow::{FlowKey, parse_flow};
use ferrovs_switch::ofproto::{Ofproto, PortTable, Translation, XlateOptions, translate};

/// `n` ACL-like rules over several masks (dst prefixes of three lengths, ports exact and masked).
fn ofproto(n: usize) -> Ofproto {
    let mut o = Ofproto::new(Arc::new(PortTable::new(vec![1, 2, 3, 4])), 1);
    for i in 0..n {
        let text = match i % 4 {
            0 => format!("priority=300,udp,nw_dst=20.{}.0.0/16,tp_dst={},actions=output:p1", i % 250, 1024 + i),
            1 => format!("priority=200,ip,nw_dst=20.{}.0.0/16,actions=output:p2", i % 250),
            2 => format!("priority=150,udp,tp_dst={:#x}/0xf000,actions=output:p3", (i % 15 + 1) << 12),
            _ => format!("priority=100,ip,nw_dst=20.{}.0.0/12,actions=output:p1", (i % 15) * 16),
        };
        o.add(parse_flow(&text, &Ports).unwrap(), 0).unwrap();
    }
    o
}

fn keys() -> Vec<FlowKey> {
    (0..32u32)
        .map(|i| {
            let mut k = FlowKey::ZERO;
            k.set_in_port(1);
            k.set_dl_type(0x0800);
            k.set_nw_proto(17);
            k.set_nw_dst(0x1400_0000 | ((i * 7919) % 0x00ff_ffff));
            k.set_tp_dst(1024 + i as u16 * 100);
            k
        })
        .collect()
}

fn xlate(c: &mut Criterion) {
    for n in [1, 100, 1000] {
        let o = ofproto(n);
        let tables = o.tables().clone();
        let ports = o.ports().clone();
        let keys = keys();
        let mut out = Translation::default();
        c.bench_function(&format!("translate_32_keys_{n}_rules"), |b| {
            b.iter(|| {
                for k in &keys {
                    translate(&tables, &ports, black_box(k), XlateOptions::default(), &mut out);
                    black_box(&out);
                }
            })
        });
    }
}

fn parse(c: &mut Criterion) {
    c.bench_function("parse_flow", |b| {
        b.iter(|| {
            parse_flow(black_box("priority=10,tcp,in_port=p3,nw_dst=10.0.0.0/8,tp_dst=80,actions=output:p1"), &Ports)
                .unwrap()
        })
    });
}

criterion_group!(benches, xlate, parse);
criterion_main!(benches);
