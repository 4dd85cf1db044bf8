#!/bin/busybox sh
# /init of the VM tier's initramfs: mount what Python and iproute2 need, load the kernel
# modules the test uses, run the checks, report on the serial console, power off.
/bin/busybox --install -s /bin
export PATH=/usr/sbin:/usr/bin:/bin:/sbin   # iproute2 before busybox applets of the same name
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
mount -t tmpfs tmpfs /run
mount -t tmpfs tmpfs /tmp
mkdir -p /dev/net
[ -c /dev/net/tun ] || mknod /dev/net/tun c 10 200
while read -r module; do
    insmod "/modules/$module" || echo "NTT-VM insmod $module failed"
done </modules/order
ip link set lo up
echo "NTT-VM kernel $(uname -r)"
PYTHONPATH=/opt/py:/opt/collections PYTHONDONTWRITEBYTECODE=1 /usr/bin/python3 /vm/guest_checks.py
echo "NTT-VM exit $?"
poweroff -f
