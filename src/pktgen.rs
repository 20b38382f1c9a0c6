//! `ferrovs gen-pcap`: writes a pcap of UDP/IPv4 test traffic with a chosen number of flows, for the
//! demo and for benchmarks (`net_pcap,rx_pcap=FILE,infinite_rx=1` replays it forever).

use std::fs::File;
use std::io::BufWriter;
use std::net::Ipv4Addr;
use std::path::PathBuf;

use anyhow::{Context, bail};
use etherparse::PacketBuilder;
use pcap_file::DataLink;
use pcap_file::pcap::{PcapHeader, PcapPacket, PcapWriter};

/// Smallest Ethernet frame without FCS.
pub const MIN_FRAME: usize = 60;
/// Ethernet + IPv4 + UDP headers.
const HEADERS: usize = 14 + 20 + 8;

/// What to generate.
#[derive(Debug, Clone, clap::Args)]
pub struct GenPcap {
    /// Output file.
    #[arg(long, short)]
    pub out: PathBuf,
    /// Distinct flows (5-tuples): flow i has source 10.x.y.z = 10.0.0.0 + i and UDP source port
    /// 1024 + i % 60000; destination 192.168.0.1 port 5001 unless --spread.
    #[arg(long, default_value_t = 1)]
    pub flows: u32,
    /// Packets in the file (flows repeat round-robin); default: one per flow.
    #[arg(long)]
    pub packets: Option<u32>,
    /// Frame length in bytes, without FCS (60 is a 64-byte frame on the wire).
    #[arg(long, default_value_t = MIN_FRAME)]
    pub size: usize,
    /// Source MAC of every frame.
    #[arg(long, default_value = "02:00:00:00:00:01")]
    pub src_mac: String,
    /// Destination MAC of every frame.
    #[arg(long, default_value = "02:00:00:00:00:02")]
    pub dst_mac: String,
    /// Spread the flows' destinations too: IP over 20.0.0.0/8 and UDP port over 1024..65535, so
    /// rules that match destination prefixes and ports see every kind of flow.
    #[arg(long)]
    pub spread: bool,
    /// Give every flow its own source MAC (02:ff:xx:xx:xx:xx), so that a rule matching `dl_src`
    /// needs one megaflow per flow (the flow-setup benchmark).
    #[arg(long)]
    pub mac_per_flow: bool,
}

/// How flow `i` differs from the others.
#[derive(Debug, Clone, Copy)]
pub struct FlowShape {
    /// See [`GenPcap::spread`].
    pub spread: bool,
    /// See [`GenPcap::mac_per_flow`].
    pub mac_per_flow: bool,
}

fn parse_mac(text: &str) -> anyhow::Result<[u8; 6]> {
    let bytes: Vec<u8> = text
        .split(':')
        .map(|b| u8::from_str_radix(b, 16))
        .collect::<Result<_, _>>()
        .with_context(|| format!("bad MAC address {text:?}"))?;
    bytes.try_into().map_err(|_| anyhow::anyhow!("bad MAC address {text:?}: need 6 bytes"))
}

/// The frame of flow `flow`, `size` bytes long.
pub fn frame(flow: u32, size: usize, mut src_mac: [u8; 6], dst_mac: [u8; 6], shape: FlowShape) -> Vec<u8> {
    let src_ip = Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 0, 0, 0)).wrapping_add(flow));
    let (dst_ip, dst_port) = if shape.spread {
        // An odd multiplier permutes the 24 host bits: distinct flows, distinct destinations.
        let host = flow.wrapping_mul(0x9e37_79b1) & 0x00ff_ffff;
        (Ipv4Addr::from(0x1400_0000 | host), 1024 + (flow.wrapping_mul(7919) % 64512) as u16)
    } else {
        (Ipv4Addr::new(192, 168, 0, 1), 5001)
    };
    if shape.mac_per_flow {
        src_mac = [0x02, 0xff, (flow >> 24) as u8, (flow >> 16) as u8, (flow >> 8) as u8, flow as u8];
    }
    let payload = vec![0u8; size.saturating_sub(HEADERS)];
    let builder = PacketBuilder::ethernet2(src_mac, dst_mac)
        .ipv4(src_ip.octets(), dst_ip.octets(), 64)
        .udp(1024 + (flow % 60000) as u16, dst_port);
    let mut out = Vec::with_capacity(builder.size(payload.len()));
    builder.write(&mut out, &payload).expect("writing to a Vec cannot fail");
    out
}

impl GenPcap {
    /// Writes the file.
    pub fn run(&self) -> anyhow::Result<()> {
        if self.flows == 0 {
            bail!("--flows must be at least 1");
        }
        if !(MIN_FRAME..=9000).contains(&self.size) {
            bail!("--size must be between {MIN_FRAME} and 9000 bytes, got {}", self.size);
        }
        let packets = self.packets.unwrap_or(self.flows);
        let (src, dst) = (parse_mac(&self.src_mac)?, parse_mac(&self.dst_mac)?);
        let shape = FlowShape { spread: self.spread, mac_per_flow: self.mac_per_flow };
        let file = File::create(&self.out).with_context(|| format!("cannot create {}", self.out.display()))?;
        let header = PcapHeader { datalink: DataLink::ETHERNET, snaplen: 65535, ..Default::default() };
        let mut writer = PcapWriter::with_header(BufWriter::new(file), header)?;
        for i in 0..packets {
            let data = frame(i % self.flows, self.size, src, dst, shape);
            writer.write_packet(&PcapPacket::new(std::time::Duration::ZERO, data.len() as u32, &data))?;
        }
        writer.into_writer().into_inner().map_err(|e| e.into_error())?.sync_all()?;
        eprintln!("wrote {packets} packets of {} B ({} flows) to {}", self.size, self.flows, self.out.display());
        Ok(())
    }
}
