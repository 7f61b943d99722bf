/* Out-of-line wrappers for DPDK's static inline functions, compiled with pkg-config's cflags. */
#include <rte_config.h>
#include <rte_errno.h>
#include <rte_lcore.h>
#include <rte_ethdev.h>
#include <rte_mbuf.h>
#include "shim.h"

uint16_t wyv_rte_eth_rx_burst(uint16_t port, uint16_t queue, struct rte_mbuf **pkts, uint16_t n)
{
	return rte_eth_rx_burst(port, queue, pkts, n);
}

uint16_t wyv_rte_eth_tx_burst(uint16_t port, uint16_t queue, struct rte_mbuf **pkts, uint16_t n)
{
	return rte_eth_tx_burst(port, queue, pkts, n);
}

struct rte_mbuf *wyv_rte_pktmbuf_alloc(struct rte_mempool *mp) { return rte_pktmbuf_alloc(mp); }

int wyv_rte_pktmbuf_alloc_bulk(struct rte_mempool *mp, struct rte_mbuf **mbufs, unsigned int n)
{
	return rte_pktmbuf_alloc_bulk(mp, mbufs, n);
}

void wyv_rte_pktmbuf_free(struct rte_mbuf *m) { rte_pktmbuf_free(m); }

void wyv_rte_pktmbuf_free_bulk(struct rte_mbuf **mbufs, unsigned int n)
{
	rte_pktmbuf_free_bulk(mbufs, n);
}

uint8_t *wyv_rte_pktmbuf_mtod(const struct rte_mbuf *m) { return rte_pktmbuf_mtod(m, uint8_t *); }
uint16_t wyv_rte_pktmbuf_data_len(const struct rte_mbuf *m) { return rte_pktmbuf_data_len(m); }
uint32_t wyv_rte_pktmbuf_pkt_len(const struct rte_mbuf *m) { return rte_pktmbuf_pkt_len(m); }
uint16_t wyv_rte_pktmbuf_tailroom(const struct rte_mbuf *m) { return rte_pktmbuf_tailroom(m); }
uint16_t wyv_rte_pktmbuf_headroom(const struct rte_mbuf *m) { return rte_pktmbuf_headroom(m); }
uint16_t wyv_rte_pktmbuf_nb_segs(const struct rte_mbuf *m) { return m->nb_segs; }

uint8_t *wyv_rte_pktmbuf_append(struct rte_mbuf *m, uint16_t len)
{
	return (uint8_t *)rte_pktmbuf_append(m, len);
}

uint8_t *wyv_rte_pktmbuf_prepend(struct rte_mbuf *m, uint16_t len)
{
	return (uint8_t *)rte_pktmbuf_prepend(m, len);
}

uint8_t *wyv_rte_pktmbuf_adj(struct rte_mbuf *m, uint16_t len)
{
	return (uint8_t *)rte_pktmbuf_adj(m, len);
}

int wyv_rte_pktmbuf_trim(struct rte_mbuf *m, uint16_t len) { return rte_pktmbuf_trim(m, len); }
void wyv_rte_pktmbuf_reset(struct rte_mbuf *m) { rte_pktmbuf_reset(m); }
uint16_t wyv_rte_mbuf_port(const struct rte_mbuf *m) { return m->port; }
unsigned int wyv_rte_lcore_id(void) { return rte_lcore_id(); }
int wyv_rte_errno(void) { return rte_errno; }
void wyv_rte_set_errno(int e) { rte_errno = e; }
