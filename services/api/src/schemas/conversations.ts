import Type from 'typebox'
import { CONVERSATION_ID_PATTERN, MAX_LIST } from '../plugins/app/conversations.ts'

export const ConversationId = Type.String({
  pattern: CONVERSATION_ID_PATTERN,
  description: 'A conversation id, as a chat answer returned it',
  examples: ['conv_3q2-7wEAAAAAZmFrZS1pZA'],
})

export const ConversationIdParams = Type.Object({ id: ConversationId })

const Timestamps = {
  created_at: Type.String({ format: 'date-time', description: 'When its first turn was stored' }),
  updated_at: Type.String({ format: 'date-time', description: 'When its last turn was stored' }),
}

const Title = Type.String({
  description: 'The first question asked in it, on one line (cut at 80 characters)',
})

export const ConversationSummarySchema = Type.Object({
  id: ConversationId,
  title: Title,
  ...Timestamps,
  message_count: Type.Integer({
    minimum: 0,
    description: 'Messages it keeps (at most CONVERSATION_MAX_TURNS, the oldest go first)',
  }),
})

export const ConversationListSchema = Type.Object({
  conversations: Type.Array(ConversationSummarySchema, {
    description: 'The caller key’s own conversations, most recently updated first',
  }),
})

export const ConversationListQuery = Type.Object({
  limit: Type.Integer({
    minimum: 1,
    maximum: MAX_LIST,
    default: 50,
    description: 'How many conversations at most',
  }),
})

export const ConversationMessageSchema = Type.Object({
  role: Type.Union([Type.Literal('user'), Type.Literal('assistant')]),
  content: Type.String(),
  created_at: Type.String({ format: 'date-time' }),
  sources: Type.Optional(
    Type.Array(Type.Ref('Source'), {
      description: 'An answer’s sources, numbered as its citations: [1] is the first',
    }),
  ),
})

export const ConversationSchema = Type.Object({
  id: ConversationId,
  title: Title,
  ...Timestamps,
  messages: Type.Array(ConversationMessageSchema, { description: 'Oldest first' }),
})
