//! Exchange and queue methods of a channel: declare, delete, bind, unbind, purge. The rules (reserved names,
//! equivalence, exclusivity) live in `VHost`; this file translates methods to and from it, after checking the
//! user's permissions as RabbitMQ does (before the resource is looked up, so a refusal says nothing of whether it
//! exists): `configure` for a non-passive declare and a delete; `read` on the declared queue or exchange and
//! `write` on its dead-letter or alternate exchange; `write` on the destination and `read` on the source of a
//! binding; `read` to purge.

use amq_protocol::protocol::{exchange, queue, AMQPClass};

use crate::amqp::channel::{Channel, Ctx};
use crate::amqp::error::{AmqpError, AmqpResult};
use crate::auth::{Kind, Perm};
use crate::routing::{Binding, Destination};
use crate::vhost::{ExchangeDeclare, QueueDeclare};

impl Channel {
    pub(crate) fn handle_exchange(&mut self, ctx: &mut Ctx<'_>, m: &exchange::AMQPMethod) -> AmqpResult<()> {
        use exchange::AMQPMethod as E;
        let (nowait, ok) = match m {
            E::Declare(d) => {
                if !d.passive {
                    let name = d.exchange.as_str();
                    check(ctx, Perm::Configure, Kind::Exchange, name)?;
                    if let Some(ae) = crate::args::get_str(&d.arguments, "alternate-exchange") {
                        check(ctx, Perm::Read, Kind::Exchange, name)?;
                        check(ctx, Perm::Write, Kind::Exchange, ae)?;
                    }
                }
                ctx.vhost.declare_exchange(&ExchangeDeclare {
                    name: d.exchange.as_str(),
                    kind: d.kind.as_str(),
                    passive: d.passive,
                    durable: d.durable,
                    auto_delete: d.auto_delete,
                    internal: d.internal,
                    arguments: &d.arguments,
                })?;
                (d.nowait, E::DeclareOk(exchange::DeclareOk {}))
            }
            E::Delete(d) => {
                check(ctx, Perm::Configure, Kind::Exchange, d.exchange.as_str())?;
                ctx.vhost.delete_exchange(d.exchange.as_str(), d.if_unused)?;
                (d.nowait, E::DeleteOk(exchange::DeleteOk {}))
            }
            E::Bind(b) => {
                check(ctx, Perm::Write, Kind::Exchange, b.destination.as_str())?;
                check(ctx, Perm::Read, Kind::Exchange, b.source.as_str())?;
                bind_key(ctx, b.source.as_str(), b.routing_key.as_str())?;
                let binding = Binding {
                    destination: Destination::Exchange(b.destination.to_string()),
                    routing_key: b.routing_key.to_string(),
                    arguments: b.arguments.clone(),
                };
                ctx.vhost.bind(b.source.as_str(), binding)?;
                (b.nowait, E::BindOk(exchange::BindOk {}))
            }
            E::Unbind(b) => {
                check(ctx, Perm::Write, Kind::Exchange, b.destination.as_str())?;
                check(ctx, Perm::Read, Kind::Exchange, b.source.as_str())?;
                let binding = Binding {
                    destination: Destination::Exchange(b.destination.to_string()),
                    routing_key: b.routing_key.to_string(),
                    arguments: b.arguments.clone(),
                };
                ctx.vhost.unbind(b.source.as_str(), &binding)?;
                (b.nowait, E::UnbindOk(exchange::UnbindOk {}))
            }
            _ => return Err(AmqpError::command_invalid("exchange method is not valid from a client")),
        };
        if !nowait {
            ctx.send(self.id, AMQPClass::Exchange(ok));
        }
        Ok(())
    }

    pub(crate) fn handle_queue(&mut self, ctx: &mut Ctx<'_>, m: &queue::AMQPMethod) -> AmqpResult<()> {
        use queue::AMQPMethod as Q;
        let (nowait, ok) = match m {
            Q::Declare(d) => {
                if !d.passive {
                    // A server-named queue is checked under a name of the same form as the one it will get.
                    let generated;
                    let name = if d.queue.as_str().is_empty() {
                        generated = crate::vhost::generate_queue_name();
                        generated.as_str()
                    } else {
                        d.queue.as_str()
                    };
                    check(ctx, Perm::Configure, Kind::Queue, name)?;
                    if let Some(dlx) = crate::args::get_str(&d.arguments, "x-dead-letter-exchange") {
                        check(ctx, Perm::Read, Kind::Queue, name)?;
                        check(ctx, Perm::Write, Kind::Exchange, dlx)?;
                    }
                    if let Some(max) = ctx.broker.access.vhost_limits(&ctx.vhost.name).max_queues {
                        if ctx.vhost.queue(name).is_none() && ctx.vhost.queues().len() as u64 >= max {
                            return Err(AmqpError::precondition(format!(
                                "cannot declare queue '{name}': queue limit in vhost '{}' ({max}) is reached",
                                ctx.vhost.name
                            )));
                        }
                    }
                }
                let q = ctx.vhost.declare_queue(&QueueDeclare {
                    name: d.queue.as_str(),
                    passive: d.passive,
                    durable: d.durable,
                    exclusive: d.exclusive,
                    auto_delete: d.auto_delete,
                    arguments: &d.arguments,
                    connection_id: ctx.connection_id,
                })?;
                let (message_count, consumer_count) = q.counts();
                self.last_queue = Some(q.name().to_string());
                (
                    d.nowait,
                    Q::DeclareOk(queue::DeclareOk {
                        queue: q.name().into(),
                        message_count,
                        consumer_count,
                    }),
                )
            }
            Q::Bind(b) => {
                let name = self.queue_name(b.queue.as_str())?.to_string();
                check(ctx, Perm::Write, Kind::Queue, &name)?;
                check(ctx, Perm::Read, Kind::Exchange, b.exchange.as_str())?;
                bind_key(ctx, b.exchange.as_str(), b.routing_key.as_str())?;
                ctx.vhost.queue_for(&name, ctx.connection_id)?;
                let binding = Binding {
                    destination: Destination::Queue(name),
                    routing_key: b.routing_key.to_string(),
                    arguments: b.arguments.clone(),
                };
                ctx.vhost.bind(b.exchange.as_str(), binding)?;
                (b.nowait, Q::BindOk(queue::BindOk {}))
            }
            Q::Unbind(b) => {
                let name = self.queue_name(b.queue.as_str())?.to_string();
                check(ctx, Perm::Write, Kind::Queue, &name)?;
                check(ctx, Perm::Read, Kind::Exchange, b.exchange.as_str())?;
                ctx.vhost.queue_for(&name, ctx.connection_id)?;
                let binding = Binding {
                    destination: Destination::Queue(name),
                    routing_key: b.routing_key.to_string(),
                    arguments: b.arguments.clone(),
                };
                ctx.vhost.unbind(b.exchange.as_str(), &binding)?;
                (false, Q::UnbindOk(queue::UnbindOk {}))
            }
            Q::Purge(p) => {
                let name = self.queue_name(p.queue.as_str())?.to_string();
                check(ctx, Perm::Read, Kind::Queue, &name)?;
                let q = ctx.vhost.queue_for(&name, ctx.connection_id)?;
                if q.is_stream() {
                    return Err(AmqpError::not_implemented(format!(
                        "queue.purge not supported by stream queues queue '{name}' in vhost '{}'",
                        ctx.vhost.name
                    )));
                }
                (
                    p.nowait,
                    Q::PurgeOk(queue::PurgeOk {
                        message_count: q.purge(),
                    }),
                )
            }
            Q::Delete(d) => {
                let name = self.queue_name(d.queue.as_str())?.to_string();
                check(ctx, Perm::Configure, Kind::Queue, &name)?;
                let message_count = ctx
                    .vhost
                    .delete_queue(&name, d.if_unused, d.if_empty, ctx.connection_id)?;
                (d.nowait, Q::DeleteOk(queue::DeleteOk { message_count }))
            }
            _ => return Err(AmqpError::command_invalid("queue method is not valid from a client")),
        };
        if !nowait {
            ctx.send(self.id, AMQPClass::Queue(ok));
        }
        Ok(())
    }
}

/// Checks one permission of the channel's user.
fn check(ctx: &mut Ctx<'_>, perm: Perm, kind: Kind, name: &str) -> AmqpResult<()> {
    ctx.access.check(&ctx.broker.access, perm, kind, name)
}

/// A binding key on an exchange the user has topic permissions on must match their topic `read` expression.
fn bind_key(ctx: &mut Ctx<'_>, exchange: &str, key: &str) -> AmqpResult<()> {
    ctx.access.check_bind_key(&ctx.broker.access, exchange, key)
}
