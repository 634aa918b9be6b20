// Package hubstatus reads the status a hub publishes on its monitoring
// socket (moksha.monitoring.socket), as fedmsg-check does: `gilmsg check`
// is this package behind flags.
//
// The publishing side stays in the root package: [gilmsg.Bus.RunConsumers]
// publishes its consumers' counts there when the config sets [SocketKey],
// because a hub is a service. Reading it is an operator's tool, so it
// lives here, out of the API a service imports. The JSON shape is moksha's
// (testdata/check holds one Python made); this package's [Status] is its
// reader's copy.
package hubstatus
