//! OpenFlow 1.3 + Nicira extensions: typed wire codec, switch connection and ofctrl.
