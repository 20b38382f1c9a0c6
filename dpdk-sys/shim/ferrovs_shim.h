/* C shim for the DPDK functions that are `static inline` in the headers and so have no symbol to link
 * against. Every function here is called at most once per burst (or at setup time), never per packet,
 * so the extra call costs nothing measurable. Built by build.rs with exactly pkg-config's cflags. */
#ifndef FERROVS_SHIM_H
#define FERROVS_SHIM_H

#include <stdint.h>

#include <rte_config.h>
#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_ethdev.h>
#include <rte_lcore.h>
#include <rte_launch.h>
#include <rte_mbuf.h>
#include <rte_mempool.h>
#include <rte_cycles.h>
#include <rte_dev.h>
#include <rte_bus.h>
#include <rte_eth_vhost.h>

/* Receives up to `n` packets from one queue of one port (rte_eth_rx_burst). */
uint16_t ferrovs_rx_burst(uint16_t port, uint16_t queue, struct rte_mbuf **pkts, uint16_t n);
/* Hands up to `n` packets to one queue of one port; returns how many it took (rte_eth_tx_burst). */
uint16_t ferrovs_tx_burst(uint16_t port, uint16_t queue, struct rte_mbuf **pkts, uint16_t n);
/* Allocates `n` packet mbufs at once, all or nothing: 0 on success (rte_pktmbuf_alloc_bulk). */
int ferrovs_pktmbuf_alloc_bulk(struct rte_mempool *pool, struct rte_mbuf **pkts, unsigned int n);
/* The calling thread's lcore id, or UINT32_MAX (LCORE_ID_ANY) on a thread EAL does not know. */
unsigned int ferrovs_lcore_id(void);
/* The calling thread's rte_errno (a thread-local in DPDK). */
int ferrovs_errno(void);
/* The TSC, for architectures where Rust has no intrinsic for it. */
uint64_t ferrovs_rdtsc(void);

#endif
