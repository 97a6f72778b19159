//! Exchange and queue methods of a channel: declare, delete, bind, unbind, purge. The rules (reserved names,
//! equivalence, exclusivity) live in `VHost`; this file translates methods to and from it.

use amq_protocol::protocol::{exchange, queue, AMQPClass};

use crate::amqp::channel::{Channel, Ctx};
use crate::amqp::error::{AmqpError, AmqpResult};
use crate::routing::{Binding, Destination};
use crate::vhost::{ExchangeDeclare, QueueDeclare};

impl Channel {
    pub(crate) fn handle_exchange(&mut self, ctx: &mut Ctx<'_>, m: &exchange::AMQPMethod) -> AmqpResult<()> {
        use exchange::AMQPMethod as E;
        let (nowait, ok) = match m {
            E::Declare(d) => {
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
                ctx.vhost.delete_exchange(d.exchange.as_str(), d.if_unused)?;
                (d.nowait, E::DeleteOk(exchange::DeleteOk {}))
            }
            E::Bind(b) => {
                let binding = Binding {
                    destination: Destination::Exchange(b.destination.to_string()),
                    routing_key: b.routing_key.to_string(),
                    arguments: b.arguments.clone(),
                };
                ctx.vhost.bind(b.source.as_str(), binding)?;
                (b.nowait, E::BindOk(exchange::BindOk {}))
            }
            E::Unbind(b) => {
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
                let q = ctx.vhost.queue_for(&name, ctx.connection_id)?;
                (
                    p.nowait,
                    Q::PurgeOk(queue::PurgeOk {
                        message_count: q.purge(),
                    }),
                )
            }
            Q::Delete(d) => {
                let name = self.queue_name(d.queue.as_str())?.to_string();
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
