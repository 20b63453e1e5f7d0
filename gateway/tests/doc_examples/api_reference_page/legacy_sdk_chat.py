import openai

openai.api_base = "https://api.aqta.ai/v1"
openai.api_key = "sk-aqta-YOUR_KEY"

response = openai.ChatCompletion.create(
    model="gpt-4",
    messages=[{"role": "user", "content": "Hello!"}]
)
