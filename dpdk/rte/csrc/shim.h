/* Out-of-line wrappers for DPDK's static inline functions (bindgen cannot link those). */
#ifndef WYV_RTE_SHIM_H
#define WYV_RTE_SHIM_H
#include <stdint.h>
struct rte_mbuf;
struct rte_mempool;

uint16_t wyv_rte_eth_rx_burst(uint16_t port, uint16_t queue, struct rte_mbuf **pkts, uint16_t n);
uint16_t wyv_rte_eth_tx_burst(uint16_t port, uint16_t queue, struct rte_mbuf **pkts, uint16_t n);
struct rte_mbuf *wyv_rte_pktmbuf_alloc(struct rte_mempool *mp);
int wyv_rte_pktmbuf_alloc_bulk(struct rte_mempool *mp, struct rte_mbuf **mbufs, unsigned int n);
void wyv_rte_pktmbuf_free(struct rte_mbuf *m);
void wyv_rte_pktmbuf_free_bulk(struct rte_mbuf **mbufs, unsigned int n);
uint8_t *wyv_rte_pktmbuf_mtod(const struct rte_mbuf *m);
uint16_t wyv_rte_pktmbuf_data_len(const struct rte_mbuf *m);
uint32_t wyv_rte_pktmbuf_pkt_len(const struct rte_mbuf *m);
uint16_t wyv_rte_pktmbuf_tailroom(const struct rte_mbuf *m);
uint16_t wyv_rte_pktmbuf_headroom(const struct rte_mbuf *m);
uint16_t wyv_rte_pktmbuf_nb_segs(const struct rte_mbuf *m);
uint8_t *wyv_rte_pktmbuf_append(struct rte_mbuf *m, uint16_t len);
uint8_t *wyv_rte_pktmbuf_prepend(struct rte_mbuf *m, uint16_t len);
uint8_t *wyv_rte_pktmbuf_adj(struct rte_mbuf *m, uint16_t len);
int wyv_rte_pktmbuf_trim(struct rte_mbuf *m, uint16_t len);
void wyv_rte_pktmbuf_reset(struct rte_mbuf *m);
uint16_t wyv_rte_mbuf_port(const struct rte_mbuf *m);
unsigned int wyv_rte_lcore_id(void);
int wyv_rte_errno(void);
void wyv_rte_set_errno(int e);
#endif
