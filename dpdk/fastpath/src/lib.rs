//! A poll-mode DPDK datapath that executes the compiled pipeline in software for what the NIC refuses.
