#include "ferrovs_shim.h"

uint16_t ferrovs_rx_burst(uint16_t port, uint16_t queue, struct rte_mbuf **pkts, uint16_t n)
{
	return rte_eth_rx_burst(port, queue, pkts, n);
}

uint16_t ferrovs_tx_burst(uint16_t port, uint16_t queue, struct rte_mbuf **pkts, uint16_t n)
{
	return rte_eth_tx_burst(port, queue, pkts, n);
}

int ferrovs_pktmbuf_alloc_bulk(struct rte_mempool *pool, struct rte_mbuf **pkts, unsigned int n)
{
	return rte_pktmbuf_alloc_bulk(pool, pkts, n);
}

unsigned int ferrovs_lcore_id(void)
{
	return rte_lcore_id();
}

int ferrovs_errno(void)
{
	return rte_errno;
}

uint64_t ferrovs_rdtsc(void)
{
	return rte_rdtsc();
}
