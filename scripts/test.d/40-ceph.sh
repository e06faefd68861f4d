# Sourced by scripts/test: Ceph for the `rgw` tier of the API suite (tests marked rgw,
# run by default). scripts/services/ceph-rgw starts a one-node cluster (mon, memstore OSD,
# radosgw) from these packages in a temporary directory; it installs nothing itself.
ensure_apt_packages ceph-mon ceph-osd radosgw ceph-common
