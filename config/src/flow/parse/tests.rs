use super::*;
use crate::flow::{FRAG_ANY, FRAG_LATER, FlowKey};

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

fn flow(f: impl FnOnce(&mut FlowKey)) -> FlowKey {
    let mut k = FlowKey::ZERO;
    f(&mut k);
    k
}

#[test]
fn parses_the_basic_forms() {
    let r = parse("priority=10,in_port=p0,actions=output:p1").unwrap();
    assert_eq!((r.table, r.priority, r.cookie), (0, 10, 0));
    assert_eq!(r.matches.mask.in_port(), 0xffff);
    assert_eq!(r.matches.key.in_port(), 1);
    assert_eq!(r.actions, vec![Action::Output(2)]);

    let r = parse("table=3 cookie=0x1f priority=0 in_port=10 idle_timeout=5,hard_timeout=9 actions=output:1,output:p1")
        .unwrap();
    assert_eq!((r.table, r.priority, r.cookie, r.idle_timeout, r.hard_timeout), (3, 0, 0x1f, 5, 9));
    assert_eq!(r.actions, vec![Action::Output(1), Action::Output(2)]);

    assert_eq!(parse("actions=drop").unwrap().actions, vec![]);
    assert_eq!(parse("in_port=p1,actions=").unwrap().actions, vec![]);
    assert_eq!(
        parse("actions=p1,2,output(port=uplink)").unwrap().actions,
        vec![Action::Output(2), Action::Output(2), Action::Output(10)]
    );
    assert_eq!(parse("in_port=p0 actions=output:p1").unwrap().priority, DEFAULT_PRIORITY);
}

#[test]
fn matches_what_it_says() {
    let r = parse("tcp,nw_dst=10.0.0.0/8,tp_dst=0x1000/0xf000,actions=drop").unwrap();
    let hit = flow(|k| {
        k.set_dl_type(0x0800);
        k.set_nw_proto(6);
        k.set_nw_dst(0x0a01_0203);
        k.set_tp_dst(0x1234);
    });
    assert!(r.matches.matches(&hit));
    let mut miss = hit;
    miss.set_tp_dst(0x2234);
    assert!(!r.matches.matches(&miss));
    miss = hit;
    miss.set_nw_dst(0x0b00_0001);
    assert!(!r.matches.matches(&miss));
    miss = hit;
    miss.set_nw_proto(17);
    assert!(!r.matches.matches(&miss));

    let r = parse("dl_dst=01:00:00:00:00:00/01:00:00:00:00:00,actions=drop").unwrap();
    assert!(r.matches.matches(&flow(|k| k.set_dl_dst([0xff; 6]))));
    assert!(!r.matches.matches(&flow(|k| k.set_dl_dst([2, 0, 0, 0, 0, 1]))));

    let r = parse("vlan_tci=0x1000/0x1000,actions=drop").unwrap();
    assert!(r.matches.matches(&flow(|k| k.set_vlan_tci(0x1064))));
    assert!(!r.matches.matches(&flow(|k| k.set_vlan_tci(0))));

    let r = parse("dl_vlan=100,actions=drop").unwrap();
    assert!(r.matches.matches(&flow(|k| k.set_vlan_tci(0x3064))));
    assert!(!r.matches.matches(&flow(|k| k.set_vlan_tci(0x0064))), "present bit required");
    let r = parse("dl_vlan=0xffff,actions=drop").unwrap();
    assert!(r.matches.matches(&flow(|k| k.set_vlan_tci(0))));
    assert!(!r.matches.matches(&flow(|k| k.set_vlan_tci(0x1000))));
    let r = parse("dl_vlan_pcp=5,actions=drop").unwrap();
    assert!(r.matches.matches(&flow(|k| k.set_vlan_tci(0xb000 | 7))));

    let r = parse("ip,ip_dscp=46,nw_ecn=1,actions=drop").unwrap();
    assert!(r.matches.matches(&flow(|k| {
        k.set_dl_type(0x800);
        k.set_nw_tos(46 << 2 | 1)
    })));
    let r = parse("ip,ip_frag=later,actions=drop").unwrap();
    assert!(r.matches.matches(&flow(|k| {
        k.set_dl_type(0x800);
        k.set_nw_frag(FRAG_ANY | FRAG_LATER)
    })));
    let r = parse("tcp,tcp_flags=+syn-ack,actions=drop").unwrap();
    let syn = flow(|k| {
        k.set_dl_type(0x800);
        k.set_nw_proto(6);
        k.set_tcp_flags(0x002);
    });
    assert!(r.matches.matches(&syn));
    let mut synack = syn;
    synack.set_tcp_flags(0x012);
    assert!(!r.matches.matches(&synack));

    let r = parse("arp,arp_op=1,arp_tpa=10.0.0.7,arp_sha=02:00:00:00:00:01,actions=drop").unwrap();
    assert!(r.matches.matches(&flow(|k| {
        k.set_dl_type(0x806);
        k.set_nw_proto(1);
        k.set_nw_dst(0x0a00_0007);
        k.set_arp_sha([2, 0, 0, 0, 0, 1]);
    })));
    let r = parse("ipv6,ipv6_dst=fd00::/8,ipv6_label=0x12345,actions=drop").unwrap();
    let mut dst = [0u8; 16];
    dst[0] = 0xfd;
    dst[15] = 9;
    assert!(r.matches.matches(&flow(|k| {
        k.set_dl_type(0x86dd);
        k.set_ipv6_dst(dst);
        k.set_ipv6_label(0x12345);
    })));
    let r = parse("icmp6,icmpv6_type=128,actions=drop").unwrap();
    assert!(r.matches.matches(&flow(|k| {
        k.set_dl_type(0x86dd);
        k.set_nw_proto(58);
        k.set_tp_src(128);
    })));
}

#[test]
fn parses_every_action() {
    let r = parse(
        "ip,actions=in_port,flood,all,normal,mod_vlan_vid:10,mod_vlan_pcp:3,strip_vlan,pop_vlan,push_vlan:0x8100,\
         mod_dl_src:02:00:00:00:00:0a,mod_dl_dst:02:00:00:00:00:0b,mod_nw_src:1.2.3.4,mod_nw_dst:5.6.7.8,\
         mod_nw_tos:184,mod_tp_src:1,mod_tp_dst:2,dec_ttl,set_field:9.9.9.9->ip_dst,set_field:100->vlan_vid,\
         resubmit(,2),resubmit(p1,3),resubmit:p0,output:in_port,goto_table:4",
    )
    .unwrap();
    assert_eq!(
        r.actions,
        vec![
            Action::InPort,
            Action::Flood,
            Action::All,
            Action::Normal,
            Action::ModVlanVid(10),
            Action::ModVlanPcp(3),
            Action::StripVlan,
            Action::StripVlan,
            Action::PushVlan(0x8100),
            Action::ModDlSrc([2, 0, 0, 0, 0, 10]),
            Action::ModDlDst([2, 0, 0, 0, 0, 11]),
            Action::ModNwSrc(0x0102_0304),
            Action::ModNwDst(0x0506_0708),
            Action::ModNwTos(184),
            Action::ModTpSrc(1),
            Action::ModTpDst(2),
            Action::DecTtl,
            Action::SetField(Field::NwDst, 0x0909_0909),
            Action::SetField(Field::VlanVid, 100),
            Action::Resubmit { port: None, table: Some(2) },
            Action::Resubmit { port: Some(2), table: Some(3) },
            Action::Resubmit { port: Some(1), table: None },
            Action::InPort,
            Action::GotoTable(4),
        ]
    );
}

#[test]
fn prints_what_it_parsed() {
    for text in [
        "priority=10,in_port=p0 actions=output:p1",
        "cookie=0x1f, table=3, priority=0,in_port=uplink actions=output:p0,output:p1",
        "priority=32768 actions=drop",
        "idle_timeout=10, hard_timeout=60, priority=5,tcp,in_port=p0,nw_src=10.0.0.0/8,tp_dst=80 actions=mod_tp_dst:8080,output:p1",
        "priority=1,udp6,ipv6_src=fd00::/16,tp_src=0x1000/0xf000 actions=dec_ttl,IN_PORT",
        "priority=1,arp,arp_spa=10.0.0.1,arp_op=2,arp_tha=02:00:00:00:00:01 actions=FLOOD",
        "priority=1,dl_vlan=100,dl_src=02:00:00:00:00:00/ff:ff:ff:00:00:00 actions=strip_vlan,output:p1",
        "priority=1,dl_vlan=7,dl_vlan_pcp=3 actions=mod_vlan_pcp:5,ALL",
        "priority=1,vlan_tci=0x0000 actions=mod_vlan_vid:4,NORMAL",
        "priority=1,vlan_tci=0x1000/0x1000 actions=push_vlan:0x88a8",
        "priority=1,ip,nw_dst=10.1.0.0/255.255.0.255,nw_tos=184,nw_ecn=2,nw_ttl=5,ip_frag=first actions=mod_nw_tos:0,output:p1",
        "priority=1,ip,nw_proto=47 actions=drop",
        "priority=1,dl_type=0x88cc actions=drop",
        "priority=1,tcp,tcp_flags=+syn-ack actions=set_field:1.2.3.4->nw_src,set_field:80->tcp_dst",
        "priority=1,udp6 actions=set_field:fd00::1->ipv6_dst,set_field:53->udp_src",
        "priority=1,icmp,icmp_type=8,icmp_code=0 actions=resubmit(,1),resubmit(p1,2),resubmit:p0,goto_table:7",
        "priority=1,icmp6,icmpv6_type=135 actions=set_field:02:00:00:00:00:09->dl_dst,mod_dl_src:02:00:00:00:00:08",
        "priority=1,ipv6,dl_vlan=5,ipv6_label=0x12345 actions=set_field:100->vlan_vid,set_field:3->vlan_pcp",
        "priority=1 actions=push_vlan:0x8100,set_field:7->vlan_vid",
    ] {
        let rule = parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
        let printed = rule.display(&Ports).to_string();
        assert_eq!(printed, text);
        assert_eq!(parse(&printed).unwrap(), rule, "{printed}");
    }
}

#[test]
fn rejects_bad_rules_with_the_reason() {
    for (text, reason) in [
        ("priority=10,in_port=p0", "missing actions="),
        ("priority=70000,actions=drop", "priority: 70000 is out of range (0 to 65535)"),
        ("priority=ten,actions=drop", "priority: \"ten\" is not a number"),
        ("priority=,actions=drop", "priority: missing value"),
        ("table=255,actions=drop", "table: 255 is out of range (0 to 254)"),
        ("in_port=p9,actions=drop", "in_port: unknown port \"p9\""),
        ("in_port=7,actions=drop", "in_port: unknown port 7"),
        ("in_port=p0,actions=output:p9", "output: unknown port \"p9\""),
        ("in_port=p0,actions=output:99", "output: unknown port 99"),
        ("in_port=p0,actions=output", "output: missing port"),
        ("nw_tll=3,actions=drop", "unknown field \"nw_tll\""),
        ("in_port=p0,in_port=p1,actions=drop", "in_port: given twice"),
        ("actions=flibble", "unknown action \"flibble\""),
        ("actions=drop,output:p1", "drop must be the only action"),
        ("cookie=1/1,actions=drop", "cookie mask"),
        ("actions=output(port=p1", "unbalanced"),
        // Prerequisites.
        ("tp_dst=80,actions=drop", "tp_dst: needs tcp, udp or sctp"),
        ("ip,tp_dst=80,actions=drop", "tp_dst: needs tcp, udp or sctp"),
        ("nw_src=10.0.0.1,actions=drop", "nw_src: needs ip or arp"),
        ("ipv6_src=::1,actions=drop", "ipv6_src: needs ipv6"),
        ("tcp6,nw_dst=1.1.1.1,actions=drop", "nw_dst: needs ip or arp"),
        ("udp,tcp_flags=+syn,actions=drop", "tcp_flags: needs tcp"),
        ("icmp6,icmp_type=1,actions=drop", "icmp_type: needs icmp"),
        ("arp_op=1,actions=drop", "arp_op: needs arp"),
        ("nw_ttl=3,actions=drop", "nw_ttl: needs ip or ipv6"),
        // Values and masks.
        ("ip,nw_dst=10.0.0.0/33,actions=drop", "prefix length must be 0 to 32"),
        ("ip,nw_dst=10.0.0.256,actions=drop", "nw_dst: \"10.0.0.256\" is not an IPv4 address"),
        ("dl_dst=01:00:00:00:00,actions=drop", "is not a MAC address"),
        ("tcp,tp_dst=70000,actions=drop", "tp_dst: 70000 is out of range (0 to 65535)"),
        ("tcp,tp_dst=80/0x1ffff,actions=drop", "has bits outside the field"),
        ("ip,nw_ttl=3/3,actions=drop", "nw_ttl: does not take a mask"),
        ("ip,nw_tos=3,actions=drop", "has ECN bits set"),
        ("dl_vlan=5000,actions=drop", "dl_vlan: 5000 is out of range (0 to 4095)"),
        ("ip,ip_frag=sometimes,actions=drop", "ip_frag: \"sometimes\" is not one of"),
        ("tcp,tcp_flags=+syn+bogus,actions=drop", "unknown TCP flag \"bogus\""),
        ("tcp,udp,actions=drop", "udp: conflicts with an earlier part of the match"),
        ("ip,dl_type=0x0806,actions=drop", "dl_type: conflicts"),
        ("vlan_vid=3,actions=drop", "vlan_vid: can only be set"),
        // Actions.
        ("actions=mod_vlan_vid:4096", "mod_vlan_vid: 4096 is out of range"),
        ("actions=mod_vlan_pcp:8", "mod_vlan_pcp: 8 is out of range"),
        ("actions=push_vlan:0x0800", "push_vlan: ethertype 0x0800 is not 0x8100 or 0x88a8"),
        ("actions=mod_dl_src:zz", "mod_dl_src: Some(\"zz\") is not a MAC address"),
        ("actions=mod_nw_tos:3", "ECN bits"),
        ("actions=set_field:1->in_port", "set_field: in_port cannot be set"),
        ("actions=set_field:7->vlan_vid", "set_field: vlan_vid needs a VLAN tag"),
        ("dl_vlan=3,actions=strip_vlan,set_field:7->vlan_vid", "set_field: vlan_vid needs a VLAN tag"),
        ("actions=set_field:1.2.3.4->nw_dst", "set_field: nw_dst needs ip in the match"),
        ("arp,actions=set_field:1.2.3.4->nw_dst", "set_field: nw_dst needs ip in the match"),
        ("udp,actions=set_field:99->tp_dst", "set_field: tcp_dst needs tcp or tcp6 in the match"),
        ("tcp,actions=set_field:99->udp_dst", "set_field: udp_dst needs udp or udp6"),
        ("dl_vlan=1,actions=set_field:8192->vlan_vid", "set_field: 8192 is out of range"),
        ("actions=set_field:1.2.3.4->nw_foo", "set_field: unknown field"),
        ("actions=set_field:1.2.3.4/8->nw_dst", "masked set_field is not supported"),
        ("actions=set_field:10.0.0.1", "is not VALUE->FIELD"),
        ("table=3,actions=goto_table:2", "goto_table: table 2 is not after this rule's table 3"),
        ("actions=goto_table:2,output:p1", "goto_table must be the last action"),
        ("actions=resubmit(,255)", "resubmit: 255 is out of range"),
        ("actions=controller", "controller: port not supported by ferrovs"),
        ("actions=learn(table=1)", "learn: action not supported by ferrovs"),
        ("actions=output:local", "local: port not supported"),
    ] {
        let err = parse(text).expect_err(text);
        assert!(err.contains(reason), "{text:?} gave {err:?}, wanted {reason:?}");
        assert!(!err.contains('\n'));
    }
}

#[test]
fn parse_match_reads_a_packet_description() {
    let m = parse_match("in_port=p0,tcp,nw_dst=10.1.2.3,tp_dst=80", &Ports).unwrap();
    assert_eq!(m.key.in_port(), 1);
    assert_eq!(m.key.tp_dst(), 80);
    assert_eq!(m.key.nw_dst(), 0x0a01_0203);
    assert!(parse_match("tp_dst=80", &Ports).is_err());
}
