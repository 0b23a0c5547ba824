package installer

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// DefaultLabelInterval is how often KeepLabel compares the node label
// with the installation by default: a lost label is back within a
// minute, at one cached read of the Node object per node and minute.
const DefaultLabelInterval = time.Minute

// labelTimeout bounds one check, the API calls included; the host lock
// is held for as long.
const labelTimeout = 30 * time.Second

// KeepLabel keeps the node label in step with the installation until ctx
// ends, comparing them every interval (interval > 0):
//
//   - installation intact (Check) and label missing, e.g. after the Node
//     object was deleted and registered again or someone removed the
//     label: the label is set again;
//   - an uninstall requested (RequestUninstall): the label stays off;
//   - installation not intact (a file removed, the import edited out by
//     config management, a restart pending): the label is removed, so
//     that no new watch pod is scheduled onto a node whose containerd may
//     not know the runtime after its next restart, and the reason is
//     logged once. KeepLabel does not re-install: that would restart
//     containerd from a background loop, possibly undoing an operator's
//     deliberate change or fighting config management at every period.
//     Re-installing is the operator's decision: deleting the installer
//     pod re-installs (Install runs on every start).
//
// An error (API server unreachable, Node object gone, host unreadable) is
// logged and the check runs again next period; KeepLabel never returns
// early. The check runs under the host lock that Install, Uninstall and
// RequestUninstall take, so it never sees their work half done.
func KeepLabel(ctx context.Context, o Options, n *Node, interval time.Duration) {
	o = o.withDefaults()
	k := &labelKeeper{o: o, n: n, interval: interval}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		k.once(ctx)
	}
}

// labelKeeper is KeepLabel's state between periods: the reason the node
// should not be labelled that it logged last ("" when it should be).
type labelKeeper struct {
	o        Options
	n        *Node
	interval time.Duration
	why      string
}

// once runs one period's check and logs what changed.
func (k *labelKeeper) once(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, labelTimeout)
	defer cancel()
	c, err := k.o.reconcileLabel(ctx, k.n)
	if c.decided && c.why != k.why {
		k.logWhy(c.why)
	}
	switch {
	case err != nil:
		fmt.Fprintf(k.o.Log, "node %s: label check: %v (next check in %s)\n", k.n.Name, err, k.interval)
	case c.changed && c.why == "":
		fmt.Fprintf(k.o.Log, "node %s: label %s was missing: set again (installation intact)\n", k.n.Name, NodeLabel)
	case c.changed:
		fmt.Fprintf(k.o.Log, "node %s: label %s removed (%s)\n", k.n.Name, NodeLabel, c.why)
	}
}

// logWhy logs a change of the reason not to label the node.
func (k *labelKeeper) logWhy(why string) {
	k.why = why
	switch {
	case why == "":
		fmt.Fprintf(k.o.Log, "node %s: installation intact again\n", k.n.Name)
	case why == whyUninstall:
		fmt.Fprintf(k.o.Log, "node %s: uninstall requested: label %s stays off until the next install\n", k.n.Name, NodeLabel)
	default:
		fmt.Fprintf(k.o.Log, "ERROR node %s: installation not intact: %s; label %s kept off, runtime %s NOT re-installed automatically: delete this installer pod to install again\n", k.n.Name, why, NodeLabel, RuntimeName)
	}
}

// whyUninstall is reconcileLabel's reason while an uninstall is requested.
const whyUninstall = "uninstall requested"

// labelCheck is what one reconcileLabel found and did.
type labelCheck struct {
	decided bool   // the installation could be read
	why     string // why the node must not be labelled; "" when it must
	changed bool   // the label was set or removed
}

// reconcileLabel compares installation and label once and corrects the
// label. It holds the host lock throughout, so that an uninstall, which
// records its request under that lock before it removes the label, is
// never overtaken by a decision taken before the request.
func (o Options) reconcileLabel(ctx context.Context, n *Node) (labelCheck, error) {
	var c labelCheck
	unlock, err := o.lockHost()
	if err != nil {
		return c, err
	}
	defer unlock()
	if o.uninstallRequested() {
		c.why = whyUninstall
	} else if err := o.check(); errors.Is(err, ErrNotInstalled) {
		c.why = err.Error()
	} else if err != nil {
		return c, err
	}
	c.decided = true
	has, err := n.Labelled(ctx)
	if err != nil {
		return c, err
	}
	switch {
	case c.why == "" && !has:
		c.changed, err = true, n.Label(ctx)
	case c.why != "" && has:
		c.changed, err = true, n.Unlabel(ctx)
	}
	if err != nil {
		c.changed = false
	}
	return c, err
}
