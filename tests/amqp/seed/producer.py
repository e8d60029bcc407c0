import pika

connection = pika.BlockingConnection(pika.ConnectionParameters('localhost'))
channel = connection.channel()

channel.queue_declare(queue='hello')

properties = pika.BasicProperties(delivery_mode=2)  # 持久化消息

channel.basic_publish(exchange='', routing_key='hello', body='Hello World!', properties=properties)

connection.close()
