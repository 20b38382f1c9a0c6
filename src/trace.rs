//! `ferrovs trace`: what the flow tables do to one packet, table by table, like
//! `ovs-appctl ofproto/trace`. No DPDK is started: the config's rules are installed in a private
//! copy of the pipeline, and the packet is either described by its fields or read from a pcap.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, bail};
use etherparse::{
    ArpHardwareId, ArpOperation, ArpPacket, EtherType, Ethernet2Header, IcmpEchoHeader, Icmpv4Header, Icmpv4Type,
    Icmpv6Header, Icmpv6Type, IpNumber, Ipv4Header, Ipv6Header, SingleVlanHeader, TcpHeader, UdpHeader, VlanId,
    VlanPcp,
};
use ferrovs_config::Config;
use ferrovs_config::flow::{FlowKey, FlowRule, PortMap, eth_type, flow_match, ip_proto, parse_match};
use ferrovs_switch::l2::{MacKey, MacTable};
use ferrovs_switch::ofproto::{MacAccess, Ofproto, PortTable, Translation, XlateOptions, apply_to_bytes, translate};
use ferrovs_switch::packet::extract;

/// What to trace.
#[derive(Debug, Clone, clap::Args)]
pub struct Trace {
    /// The configuration whose rules to trace through.
    #[arg(long, short)]
    pub config: PathBuf,
    /// The packet as flow fields, e.g. 'in_port=p0,tcp,nw_dst=10.1.2.3,tp_dst=80' (fields left out
    /// are zero, as in ovs-appctl ofproto/trace).
    pub flow: Option<String>,
    /// Trace every packet of this pcap instead (needs --in-port).
    #[arg(long, conflicts_with = "flow")]
    pub pcap: Option<PathBuf>,
    /// The port the pcap's packets arrive on.
    #[arg(long, requires = "pcap")]
    pub in_port: Option<String>,
}

impl Trace {
    /// Prints the trace(s) to stdout.
    pub fn run(&self, config: &Config) -> anyhow::Result<()> {
        let mut stdout = std::io::stdout().lock();
        match self.write(config, &mut stdout) {
            // `ferrovs trace ... | head` is fine.
            Err(e)
                if e.downcast_ref::<std::io::Error>().is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe) =>
            {
                Ok(())
            }
            other => other,
        }
    }

    fn write(&self, config: &Config, out: &mut impl Write) -> anyhow::Result<()> {
        let ports = Arc::new(PortTable::with_vlans(
            config.ports.iter().map(|p| p.ofport).collect(),
            config.ports.iter().map(|p| p.vlan.clone()).collect(),
        ));
        // NORMAL sees the static MACs; a pcap's packets also learn, in order, from a fresh table.
        let mut macs = MacTable::new(config.bridge.mac_table_size, u64::MAX);
        for s in &config.bridge.static_macs {
            macs.add_static(MacKey::new(s.vlan, s.mac), ports.index_of(s.ofport).context("static MAC port")?);
        }
        let mut ofproto = Ofproto::new(Arc::clone(&ports), 1);
        for rule in &config.flows {
            ofproto.add(rule.clone(), 0).map_err(|e| anyhow::anyhow!("{}: {e}", rule.display(config)))?;
        }
        match (&self.flow, &self.pcap) {
            (Some(text), None) => {
                let m = parse_match(text, config).map_err(|e| anyhow::anyhow!("{e}"))?;
                if m.mask.in_port() == 0 {
                    bail!("the flow needs in_port=PORT");
                }
                let frame = compose(&m.key);
                writeln!(out, "{}", trace_one(&ofproto, config, &m.key, &frame, MacAccess::Read(&macs)))?;
            }
            (None, Some(path)) => {
                let name = self.in_port.as_deref().context("--pcap needs --in-port PORT")?;
                let in_port = config.by_name(name).with_context(|| format!("--in-port: unknown port {name:?}"))?;
                let file = std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
                let mut reader = pcap_file::pcap::PcapReader::new(file)?;
                let mut n = 0;
                while let Some(pkt) = reader.next_packet() {
                    let pkt = pkt?;
                    n += 1;
                    let (key, _) = extract(&pkt.data, in_port);
                    let text = trace_one(&ofproto, config, &key, &pkt.data, MacAccess::Learn(&mut macs, n));
                    writeln!(out, "packet {n} ({} bytes)\n{text}\n", pkt.data.len())?;
                }
            }
            _ => bail!("give either a flow ('in_port=p0,tcp,tp_dst=80') or --pcap FILE --in-port PORT"),
        }
        Ok(())
    }
}

/// The trace of one packet: flow, tables, datapath actions, and every output packet's flow.
fn trace_one(ofproto: &Ofproto, names: &dyn PortMap, key: &FlowKey, frame: &[u8], macs: MacAccess<'_>) -> String {
    let mut text = format!("flow: {}", FlowRule::display_match(&flow_match(key), names));
    let mut out = Translation::default();
    let opts = XlateOptions { trace: Some(&mut text), names: Some(names), macs: Some(macs), ..Default::default() };
    translate(ofproto.tables(), ofproto.ports(), key, opts, &mut out);
    let (parsed, layout) = extract(frame, key.in_port());
    for (port, bytes) in apply_to_bytes(frame, &parsed, layout, &out.actions) {
        let ofport = ofproto.ports().ofport_of(port);
        let name = names.name_of(ofport).unwrap_or("?");
        let (k, _) = extract(&bytes, key.in_port());
        let shown = FlowRule::display_match(&flow_match(&k), names).to_string();
        let shown = shown.split(',').filter(|f| !f.starts_with("in_port=")).collect::<Vec<_>>().join(",");
        text.push_str(&format!("\noutput to {name}: {} bytes: {shown}", bytes.len()));
    }
    text
}

/// A frame with the fields of `key` (zero-filled where the key says nothing), at least 60 bytes.
pub fn compose(key: &FlowKey) -> Vec<u8> {
    let mut out = Vec::with_capacity(128);
    let dl_type = key.dl_type();
    let tci = key.vlan_tci();
    let outer = if tci & 0x1000 != 0 { eth_type::VLAN } else { dl_type };
    Ethernet2Header { source: key.dl_src(), destination: key.dl_dst(), ether_type: EtherType(outer) }
        .write(&mut out)
        .expect("Vec write");
    if tci & 0x1000 != 0 {
        let vlan = SingleVlanHeader {
            pcp: VlanPcp::try_new((tci >> 13) as u8).expect("3 bits"),
            drop_eligible_indicator: false,
            vlan_id: VlanId::try_new(tci & 0x0fff).expect("12 bits"),
            ether_type: EtherType(dl_type),
        };
        vlan.write(&mut out).expect("Vec write");
    }
    let l4 = |proto: u8, src: &[u8], dst: &[u8]| transport(key, proto, src, dst);
    match dl_type {
        eth_type::IPV4 => {
            let src = key.nw_src().to_be_bytes();
            let dst = key.nw_dst().to_be_bytes();
            let payload = l4(key.nw_proto(), &src, &dst);
            let mut ip = Ipv4Header::new(payload.len() as u16, key.nw_ttl(), IpNumber(key.nw_proto()), src, dst)
                .expect("payload fits");
            ip.dscp = etherparse::IpDscp::try_new(key.nw_tos() >> 2).expect("6 bits");
            ip.ecn = etherparse::IpEcn::try_new(key.nw_tos() & 3).expect("2 bits");
            ip.header_checksum = ip.calc_header_checksum();
            ip.write(&mut out).expect("Vec write");
            out.extend_from_slice(&payload);
        }
        eth_type::IPV6 => {
            let (src, dst) = (key.ipv6_src(), key.ipv6_dst());
            let payload = l4(key.nw_proto(), &src, &dst);
            let ip = Ipv6Header {
                traffic_class: key.nw_tos(),
                flow_label: etherparse::Ipv6FlowLabel::try_new(key.ipv6_label()).unwrap_or_default(),
                payload_length: payload.len() as u16,
                next_header: IpNumber(key.nw_proto()),
                hop_limit: key.nw_ttl(),
                source: src,
                destination: dst,
            };
            ip.write(&mut out).expect("Vec write");
            out.extend_from_slice(&payload);
        }
        eth_type::ARP | eth_type::RARP => {
            let arp = ArpPacket::new(
                ArpHardwareId::ETHERNET,
                EtherType::IPV4,
                ArpOperation(u16::from(key.nw_proto())),
                &key.arp_sha(),
                &key.nw_src().to_be_bytes(),
                &key.arp_tha(),
                &key.nw_dst().to_be_bytes(),
            )
            .expect("valid sizes");
            out.extend_from_slice(&arp.to_bytes());
        }
        _ => {}
    }
    if out.len() < 60 {
        out.resize(60, 0);
    }
    out
}

/// The transport header (and checksum) for `proto`, or nothing for protocols we do not build.
fn transport(key: &FlowKey, proto: u8, src: &[u8], dst: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let v4 = src.len() == 4;
    let (sport, dport) = (key.tp_src(), key.tp_dst());
    match proto {
        ip_proto::TCP => {
            let mut tcp = TcpHeader::new(sport, dport, 0, 65535);
            let f = key.tcp_flags();
            (tcp.fin, tcp.syn, tcp.rst, tcp.psh, tcp.ack, tcp.urg, tcp.ece, tcp.cwr, tcp.ns) = (
                f & 1 != 0,
                f & 2 != 0,
                f & 4 != 0,
                f & 8 != 0,
                f & 0x10 != 0,
                f & 0x20 != 0,
                f & 0x40 != 0,
                f & 0x80 != 0,
                f & 0x100 != 0,
            );
            tcp.checksum = checksum_tcp(&tcp, src, dst);
            tcp.write(&mut out).expect("Vec write");
        }
        ip_proto::UDP => {
            let mut udp = UdpHeader { source_port: sport, destination_port: dport, length: 8, checksum: 0 };
            udp.checksum = if v4 {
                udp.calc_checksum_ipv4_raw(src.try_into().expect("4"), dst.try_into().expect("4"), &[]).unwrap_or(0)
            } else {
                udp.calc_checksum_ipv6_raw(src.try_into().expect("16"), dst.try_into().expect("16"), &[]).unwrap_or(0)
            };
            udp.write(&mut out).expect("Vec write");
        }
        ip_proto::SCTP => {
            out.extend_from_slice(&sport.to_be_bytes());
            out.extend_from_slice(&dport.to_be_bytes());
            out.extend_from_slice(&[0; 8]); // verification tag, checksum: a trace does not check them
        }
        ip_proto::ICMP if v4 => {
            let icmp = match (sport, dport) {
                (8, 0) => Icmpv4Header::with_checksum(Icmpv4Type::EchoRequest(IcmpEchoHeader { id: 0, seq: 0 }), &[]),
                (t, c) => Icmpv4Header::with_checksum(
                    Icmpv4Type::Unknown { type_u8: t as u8, code_u8: c as u8, bytes5to8: [0; 4] },
                    &[],
                ),
            };
            icmp.write(&mut out).expect("Vec write");
        }
        ip_proto::ICMPV6 if !v4 => {
            let t = Icmpv6Type::Unknown { type_u8: sport as u8, code_u8: dport as u8, bytes5to8: [0; 4] };
            let icmp = Icmpv6Header::with_checksum(t, src.try_into().expect("16"), dst.try_into().expect("16"), &[])
                .expect("small");
            icmp.write(&mut out).expect("Vec write");
        }
        _ => {}
    }
    out
}

fn checksum_tcp(tcp: &TcpHeader, src: &[u8], dst: &[u8]) -> u16 {
    match (src.len(), dst.len()) {
        (4, 4) => tcp.calc_checksum_ipv4_raw(src.try_into().expect("4"), dst.try_into().expect("4"), &[]),
        _ => tcp.calc_checksum_ipv6_raw(src.try_into().expect("16"), dst.try_into().expect("16"), &[]),
    }
    .unwrap_or(0)
}
